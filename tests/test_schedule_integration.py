"""The schedule and backfill against a real Redis, a real worker and real beat processes.

A worker consuming the label ``sched`` (artifacts in a temporary directory) executes the
scheduled-run task and the runs; ``PIPELINE_SCHEDULE_LABEL=sched`` routes beat's messages
there and ``PIPELINE_BEAT_INTERVAL`` makes beat tick every few seconds instead of every minute.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import CLI, ROOT, pipeline_env, poll, run_cli, start_worker, stop_process
from pipeline.definition import flow
from pipeline.ledger.records import Ledger
from pipeline.worker.liveness import consumers_of
from pipeline.runs.submit import wait_for_run
from pipeline.settings import Settings
from test_stages import tutorial_score
from test_sweep_integration import ledger_for

LABEL = "sched"
UTC = timezone.utc
T = datetime(2026, 11, 28, 9, 1, tzinfo=UTC)
T_SEED = 1795856460  # calendar.timegm of 2026-11-28 09:01:00 (see test_ticks)


@pytest.fixture(scope="module")
def sched_artifacts(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sched") / "artifacts"


@pytest.fixture(scope="module")
def sched_worker(redis_server, sched_artifacts, tmp_path_factory):
    """A threads-pool worker on the label ``sched`` for this module."""
    log = tmp_path_factory.mktemp("schedworker") / "worker.log"
    env = pipeline_env(redis_server.url, PIPELINE_ARTIFACTS=str(sched_artifacts))
    worker = start_worker(redis_server.url, log, "--label", LABEL, "--pool", "threads", "--concurrency", "10",
                          "--log-tasks", env=env)
    yield worker
    stop_process(worker.proc)


@pytest.fixture
def sched(clean_redis, sched_worker, sched_artifacts, monkeypatch):
    """This process configured for the test Redis (artifacts shared with the worker); returns the ledger."""
    from pipeline.celery_app import app, configure

    monkeypatch.setenv("PIPELINE_ARTIFACTS", str(sched_artifacts))
    monkeypatch.setenv("CELERY_BROKER_URL", clean_redis.url)
    configure(app, Settings.from_env(pipeline_env(clean_redis.url)))
    return ledger_for(clean_redis.url)


def run_tick(ledger: Ledger, tick: datetime, alphas=(1.0, 0.1)) -> dict:
    from pipeline.schedule.tick_task import run_tick as run

    return run(ledger, tick, list(alphas), label=LABEL)


def received(worker, task: str, since: int = 0) -> int:
    """Messages of ``task`` the worker received after log offset ``since``."""
    return worker.text()[since:].count(f"Task {task}[") // 2  # "received" and "succeeded" lines


def assert_ran_once(ledger: Ledger, run_id: str, n: int) -> None:
    assert wait_for_run(ledger, run_id) == "Success"
    rows = ledger.tasks(run_id, flow.task_keys(n))
    assert [row["attempts"] for row in rows] == [1] * len(rows), rows


def test_one_tick_attempted_concurrently_makes_one_run_and_one_canvas(sched, sched_worker, sched_artifacts):
    from pipeline.schedule.tick_task import scheduled_run

    since = len(sched_worker.text())
    messages = [scheduled_run.apply_async(kwargs={"tick": T.isoformat(), "alphas": [1.0, 0.1], "label": LABEL},
                                          queue=LABEL) for _ in range(3)]
    barrier, outcomes = threading.Barrier(3), []

    def attempt() -> None:
        barrier.wait()
        outcomes.append(run_tick(sched, T))

    threads = [threading.Thread(target=attempt) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes += [m.get(timeout=60) for m in messages]
    assert {o["run_id"] for o in outcomes} == {"tick-20261128090100"}
    assert sorted(o["created"] for o in outcomes) == [False] * 5 + [True]

    run_id = "tick-20261128090100"
    assert_ran_once(sched, run_id, 2)
    assert received(sched_worker, "pipeline.download_dataset", since) == 1  # one canvas was sent
    run = sched.get_run(run_id)
    assert float(run["scheduled_start"]) == T_SEED and run["queue"] == LABEL
    run_dir = sched_artifacts / run_id
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "eval_model_0.1_train_dataset_20261128090100.txt", "eval_model_1.0_train_dataset_20261128090100.txt"]
    for alpha in (1.0, 0.1):
        text = (run_dir / f"eval_model_{alpha}_train_dataset_20261128090100.txt").read_text()
        assert float(text) == tutorial_score(T_SEED, 100, alpha)
    lines = [fields["line"] for _, fields in sched.read_logs(run_id) if fields["task"] == flow.DOWNLOAD]
    assert lines == ["download_dataset begin", "scheduled_start_time 2026-11-28T09:01:00+00:00",
                     f"seed {T_SEED}", "download_dataset end"]


CRASH = """
import os, sys
from datetime import datetime
import pipeline.runs.submit as runs
from pipeline.redis_conn import make_client
from pipeline.ledger.records import Ledger
from pipeline.schedule.tick_runs import submit_tick, tick_request
if sys.argv[1] == "before-claim":
    runs.ensure_submitted = lambda *a, **k: os._exit(3)
else:
    runs.send_canvas = lambda *a, **k: os._exit(3)
ledger = Ledger(make_client(os.environ["CELERY_BROKER_URL"]), 3600)
submit_tick(ledger, tick_request(datetime.fromisoformat(sys.argv[2]), alphas=[1.0], artifacts_root=os.environ["PIPELINE_ARTIFACTS"],
                                                                     label="sched"))
"""


def crash(url: str, where: str, tick: datetime, artifacts: Path) -> None:
    env = pipeline_env(url, PIPELINE_ARTIFACTS=str(artifacts))
    proc = subprocess.run([sys.executable, "-c", CRASH, where, tick.isoformat()], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr


def test_crash_between_record_and_submit_is_healed(sched, clean_redis, monkeypatch, sched_artifacts):
    r = clean_redis.client()
    t1 = datetime(2026, 11, 28, 10, 1, tzinfo=UTC)
    # Crash after the record, before anyone claimed the send: the next attempt sends it.
    crash(clean_redis.url, "before-claim", t1, sched_artifacts)
    run = sched.get_run("tick-20261128100100")
    assert run["submitted"] == "0" and "submitting" not in run and r.llen(LABEL) == 0
    again = run_tick(sched, t1, alphas=[1.0])
    assert again["created"] is False
    assert_ran_once(sched, "tick-20261128100100", 1)

    # Crash after claiming, before sending: a fresh claim is respected (no double send) ...
    t2 = t1 + timedelta(minutes=5)
    crash(clean_redis.url, "after-claim", t2, sched_artifacts)
    run_tick(sched, t2, alphas=[1.0])
    run = sched.get_run("tick-20261128100600")
    assert run["submitted"] == "0" and run["submitting"] and r.llen(LABEL) == 0
    # ... and once its lease is over, the next tick's scheduled run sends it.
    monkeypatch.setenv("PIPELINE_SUBMIT_LEASE", "0")
    nxt = run_tick(sched, t2 + timedelta(minutes=1), alphas=[1.0])
    assert nxt["created"] is True and nxt["healed"] == ["tick-20261128100600"]
    assert_ran_once(sched, "tick-20261128100600", 1)
    assert_ran_once(sched, "tick-20261128100700", 1)


def test_stale_beat_message_is_dropped(sched, clean_redis, tmp_path):
    """Beat's own message expires (tick + the catch-up window): one that waited longer for a worker
    creates nothing; the run's own tasks never expire."""
    from pipeline.schedule.scheduler import stamp_options
    from pipeline.schedule.tick_task import scheduled_run

    stale_tick = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    options = stamp_options({"expires": 50, "queue": LABEL}, stale_tick)
    result = scheduled_run.apply_async(kwargs={"tick": stale_tick.isoformat(), "alphas": [1.0], "label": LABEL},
                                       **options)
    assert result.id == f"tick-{stale_tick:%Y%m%d%H%M%S}-scheduled"
    poll(lambda: result.state == "REVOKED", timeout=60, what="the expired message to be dropped")
    assert sched.list_runs() == []


def test_beat_killed_across_ticks_creates_the_missed_runs_on_restart(sched, clean_redis, tmp_path):
    """kill -9 of beat, a pause across several ticks (2 s grid here, minutes in production), a
    restart on the same state dir: every tick of the pause gets its run, none is skipped."""
    state = tmp_path / "state-killed"
    beat, first_log = start_beat(clean_redis.url, tmp_path, "killed", state=state, PIPELINE_BEAT_CATCHUP="60")
    try:
        poll(lambda: len(beat_ticks(first_log)) >= 2, "beat to send two ticks", 60)
    finally:
        stop_process(beat, signal.SIGKILL)
    killed = datetime.now(UTC)
    time.sleep(7)  # three grid points pass with no beat
    beat, second_log = start_beat(clean_redis.url, tmp_path, "restarted", state=state, PIPELINE_BEAT_CATCHUP="60")
    try:
        restarted = datetime.now(UTC)
        poll(lambda: any(datetime.fromisoformat(t) > restarted for t in beat_ticks(second_log)),
             "the restarted beat to send a tick after its start", 60)
    finally:
        stop_process(beat)
    sent = sorted({datetime.fromisoformat(t) for t in beat_ticks(first_log) + beat_ticks(second_log)})
    grid = [sent[0] + timedelta(seconds=2 * i) for i in range(int((sent[-1] - sent[0]).total_seconds() / 2) + 1)]
    assert sent == grid, [t.isoformat() for t in sent]  # no gap: every grid point was sent by one beat or the other
    missed = [t for t in grid if killed < t < restarted]
    assert len(missed) >= 3 and {t.isoformat().replace("+00:00", "Z") for t in missed} <= set(beat_ticks(second_log))
    for tick in grid:
        run_id = f"tick-{tick:%Y%m%d%H%M%S}"
        poll(lambda run_id=run_id: sched.get_run(run_id), f"the run of {run_id}", 60)
        assert wait_for_run(sched, run_id) == "Success"


def test_backfill_is_idempotent_and_matches_the_schedule(sched, clean_redis, sched_artifacts):
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(sched_artifacts))
    r = clean_redis.client()
    poll(lambda: consumers_of(Ledger(r, 60), LABEL), timeout=20, what="the worker's record after the flush")

    def backfill(end: str, *extra: str) -> str:
        result = run_cli("backfill", "--start", "2026-11-28T08:00", "--end", end, "--alphas", "1.0",
                         "--label", LABEL, *extra, env=env)
        assert result.returncode == 0, result.stderr
        assert "no live worker" not in result.stderr
        return result.stdout

    first = json.loads(backfill("2026-11-28T08:02", "--json"))
    ids = [f"tick-2026112808{m:02d}00" for m in range(3)]
    assert (first["created"], first["skipped"], first["created_runs"]) == (3, 0, ids)
    again = backfill("2026-11-28T08:02Z")  # the same span again (with an explicit zone): nothing new
    assert again.strip() == ("backfill 2026-11-28T08:00:00Z .. 2026-11-28T08:02:00Z: "
                             "3 ticks, 0 created, 3 skipped (already had a run)")
    more = json.loads(backfill("2026-11-28T08:03", "--json"))
    assert (more["created"], more["created_runs"], more["skipped_runs"]) == (1, ["tick-20261128080300"], ids)

    # What the schedule creates for a tick is what backfill created for its neighbour.
    run_tick(sched, datetime(2026, 11, 28, 8, 4, tzinfo=UTC), alphas=[1.0])
    scheduled, backfilled = sched.get_run("tick-20261128080400"), sched.get_run("tick-20261128080300")
    for run, minute in ((scheduled, 4), (backfilled, 3)):
        assert run["params"].pop("tick") == f"2026-11-28T08:0{minute}:00+00:00"
        assert float(run["scheduled_start"]) == datetime(2026, 11, 28, 8, minute, tzinfo=UTC).timestamp()
    for field in ("params", "queue", "label", "artifacts", "flow", "version"):
        assert scheduled[field] == backfilled[field], field
    for run_id in ids + ["tick-20261128080300", "tick-20261128080400"]:
        assert_ran_once(sched, run_id, 1)
    assert (sched_artifacts / "tick-20261128080000" / "eval_model_1.0_train_dataset_20261128080000.txt").exists()


@pytest.mark.parametrize("args, message", [
    (["--start", "2026-11-28T09:05", "--end", "2026-11-28T09:00"], "start 2026-11-28T09:05:00Z is after end"),
    (["--start", "2026-11-28T09:00", "--end", "2999-01-01T00:00"], "is in the future"),
    (["--start", "2026-11-01T00:00", "--end", "2026-11-02T00:00"], "1441 ticks"),
    (["--start", "noon", "--end", "2026-11-28T09:00"], "start 'noon' is not an ISO-8601 time"),
    (["--start", "2026-11-28T09:00", "--end", "2026-11-28T09:01", "--alphas", "-0.5"], "alpha -0.5 is negative"),
    (["--start", "2026-11-28T09:00", "--end", "2026-11-28T09:01", "--label", "a b"], "label 'a b'"),
    (["--start", "2026-11-28T09:00"], "Missing option '--end'"),
])
def test_backfill_bad_input_exits_2_with_one_line(clean_redis, tmp_path, args, message):
    result = run_cli("backfill", *args, env=pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path)))
    assert result.returncode == 2, result
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert clean_redis.client().keys("pipeline:run*") == []


CLI_BEAT = (sys.executable, CLI, "beat")
"""The project's beat command."""

CELERY_BEAT = (sys.executable, "-m", "celery", "-A", "pipeline", "beat", "-l", "INFO")
"""Celery's own beat command: the schedule and the tick scheduler come from the app's configuration."""


def beat_env(url: str, state: Path, **extra: str) -> dict[str, str]:
    return pipeline_env(url, PIPELINE_BEAT_INTERVAL="2", PIPELINE_SCHEDULE_LABEL=LABEL, PIPELINE_STATE_DIR=str(state),
                        **extra)


def start_beat(url: str, tmp_path: Path, name: str, state: Path | None = None,
               command: tuple[str, ...] = CLI_BEAT, **extra: str) -> tuple[subprocess.Popen, Path]:
    env = beat_env(url, state or tmp_path / f"state-{name}", **extra)
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def beat_ticks(log: Path) -> list[str]:
    """Ticks a beat process says it sent, in order."""
    return re.findall(r"tick (\S+Z): sending", log.read_text(errors="replace"))


def test_beat_processes_create_one_run_per_tick(sched, clean_redis, sched_worker, tmp_path):
    """``python cli.py beat`` and plain ``celery -A pipeline beat`` side by side: one run per tick."""
    since = len(sched_worker.text())
    beat1, log1 = start_beat(clean_redis.url, tmp_path, "one")
    beat2 = None
    try:
        first = poll(lambda: [r for r in sched.list_runs() if r["id"].startswith("tick-")], timeout=60,
                     what="beat's first run")[0]
        first = sched.get_run(first["id"])
        tick = datetime.strptime(first["id"], "tick-%Y%m%d%H%M%S").replace(tzinfo=UTC)
        assert tick.second % 2 == 0 and float(first["scheduled_start"]) == tick.timestamp()
        assert first["params"]["tick"] == tick.isoformat()

        refused = run_cli("beat", env=pipeline_env(clean_redis.url, PIPELINE_STATE_DIR=str(tmp_path / "state-one")))
        assert refused.returncode == 2 and "another beat already runs" in refused.stderr
        refused = subprocess.run(CELERY_BEAT, cwd=ROOT, env=beat_env(clean_redis.url, tmp_path / "state-one"),
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "another beat already runs" in refused.stderr, refused
        assert "Traceback" not in refused.stderr

        beat2, log2 = start_beat(clean_redis.url, tmp_path, "two", command=CELERY_BEAT)
        common = poll(lambda: len(set(beat_ticks(log1)) & set(beat_ticks(log2))) >= 2 and
                      sorted(set(beat_ticks(log1)) & set(beat_ticks(log2))), timeout=60, what="two shared ticks")
    finally:
        stop_process(beat1)
        if beat2:
            stop_process(beat2)
    assert list((tmp_path / "state-two").glob("celerybeat-schedule*")), "celery beat's state file is in its state dir"
    sent1 = beat_ticks(log1)
    steps = {(datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() for a, b in zip(sent1, sent1[1:])}
    assert steps == {2.0}, sent1  # every grid point once, no drift

    for iso in common:
        run_id = "tick-" + datetime.fromisoformat(iso).strftime("%Y%m%d%H%M%S")
        assert_ran_once(sched, run_id, 6)
        log = sched_worker.text()[since:]
        assert log.count(f"tick {iso}: run {run_id} created") == 1
        assert log.count(f"tick {iso}: run {run_id} already recorded") == 1
    for run in sched.list_runs(limit=100):
        assert wait_for_run(sched, run["id"]) == "Success"
