"""Label routing and worker liveness records, with a real Redis and real worker processes."""
from __future__ import annotations

import json
import signal

from conftest import pipeline_env, poll, run_cli, start_worker, stop_process
from pipeline.definition import flow
from pipeline.ledger.records import Ledger
from pipeline.ledger.workers import WORKERS_PREFIX, live_workers, worker_key, write_worker
from pipeline.worker.liveness import consumers_of, unconsumed_message
from pipeline.runs.submit import wait_for_run
from test_sweep_integration import ledger_for

WAITING = "no live worker consumes queue"


def downloads(worker) -> int:
    """How many download_dataset tasks ``worker`` received."""
    return worker.text().count("Task pipeline.download_dataset[") // 2  # "received" and "succeeded"


def test_liveness_reader_and_message(clean_redis):
    r = clean_redis.client()
    book = Ledger(r, 60)
    assert unconsumed_message(book, "gpu") == (
        "no live worker consumes queue 'gpu'; the run waits queued until one starts: "
        "python cli.py worker --label gpu")
    write_worker(r, worker_key("gpu.1@h", 1), {"queues": ["gpu", "cpu"]}, 5000)
    r.set(worker_key("broken@h", 2), "not json", px=5000)
    workers = book.live_workers()  # (the session's own workers may be listed too)
    assert workers["gpu.1@h/1"] == ["gpu", "cpu"] and "broken@h/2" not in workers
    assert consumers_of(book, "cpu") == ["gpu.1@h/1"] and consumers_of(book, "nobody") == []
    assert unconsumed_message(book, "gpu") is None
    url = "redis://127.0.0.1:1/0"
    assert unconsumed_message(book, "default", embedded_url=url) is None  # the embedded worker is on its way
    assert unconsumed_message(book, "x", embedded_url=url).endswith(
        f"CELERY_BROKER_URL={url} python cli.py worker --label x")


def label_workers(r) -> list[list[str]]:
    """Queue lists of the live workers consuming this module's ``lbl-*`` queues."""
    return sorted(sorted(q) for q in live_workers(r).values() if any(x.startswith("lbl-") for x in q))


def test_label_routing_waits_for_a_matching_worker(clean_redis, tmp_path):
    """A run routed to B is not taken by A's worker; it waits Pending and completes once B's worker starts."""
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "art"))
    fast_expiry = dict(env, PIPELINE_WORKER_TTL="2", PIPELINE_WORKER_HEARTBEAT="0.5")
    r = clean_redis.client()
    worker_a = start_worker(clean_redis.url, tmp_path / "a.log", "--label", "lbl-a", "--pool", "threads",
                            "--concurrency", "4", "--log-tasks", env=fast_expiry)
    worker_b = None
    try:
        assert label_workers(r) == [["lbl-a"]]  # written before the worker said ready
        key_a = next(iter(r.scan_iter(f"{WORKERS_PREFIX}lbl-a.*")))
        assert 0 < r.pttl(key_a) <= 2000

        # B's run: accepted (exit 0) with one line saying it waits, then queued.
        waiting = run_cli("sweep", "--alphas", "1.0", "0.1", "--label", "lbl-b", "--no-wait", env=env)
        assert waiting.returncode == 0, waiting.stderr
        run_b = waiting.stdout.strip()
        notes = [line for line in waiting.stderr.splitlines() if WAITING in line]
        assert notes == [f"{WAITING} 'lbl-b'; the run waits queued until one starts: "
                         "python cli.py worker --label lbl-b"]

        # A's run, submitted after B's, completes on A's worker; no waiting note for it.
        done = run_cli("sweep", "--alphas", "1.0", "--label", "lbl-a", "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert WAITING not in done.stderr and json.loads(done.stdout)["state"] == "Success"

        ledger = ledger_for(clean_redis.url)
        assert ledger.get_run(run_b)["state"] == "Pending" and ledger.get_run(run_b)["queue"] == "lbl-b"
        assert all(row["state"] == "Pending" and row["attempts"] == 0
                   for row in ledger.tasks(run_b, flow.task_keys(2)))
        assert downloads(worker_a) == 1  # its own run's only

        # A worker consuming B (and C) starts: the waiting run completes there.
        worker_b = start_worker(clean_redis.url, tmp_path / "b.log", "--label", "lbl-b", "--label", "lbl-c",
                                "--pool", "threads", "--concurrency", "4", "--log-tasks", env=env)
        assert label_workers(r) == [["lbl-a"], ["lbl-b", "lbl-c"]]
        assert wait_for_run(ledger, run_b) == "Success"
        assert all(row["attempts"] == 1 for row in ledger.tasks(run_b, flow.task_keys(2)))
        assert downloads(worker_b) == 1 and downloads(worker_a) == 1

        # A killed worker's record expires by itself; a stopped worker deletes its own.
        stop_process(worker_a.proc, signal.SIGKILL)
        poll(lambda: consumers_of(Ledger(r, 60), "lbl-a") == [], timeout=10, what="A's record to expire")
        assert consumers_of(Ledger(r, 60), "lbl-b")
        stop_process(worker_b.proc)
        assert label_workers(r) == []
    finally:
        stop_process(worker_a.proc)
        if worker_b:
            stop_process(worker_b.proc)
