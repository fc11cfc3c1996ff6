"""A full Redis (``maxmemory`` with ``noeviction``) under a running sweep.

While it is full: every command that must write fails in one line naming
``redis.exceptions.OutOfMemoryError`` (exit 2) and leaves no run behind; the worker's
connections stay bounded (they grew by about ten a second before, and kept Redis full
after the junk was deleted). Once space is freed the run in flight ends Success, after
a ``restart`` if it was flagged stuck.
"""
from __future__ import annotations

import json
import time

import pytest

from faultkit import FAST_RESTORE, make_stack, poll
from pipeline.cli.common import EXIT_BAD_INPUT, EXIT_STUCK
from pipeline.definition import flow
from test_stages import tutorial_score

pytestmark = pytest.mark.slow

ALPHAS = ["1.0", "0.1", "0.01"]
JUNK = "x" * 10_000


def fill(client, n: int = 200) -> int:
    """Write ``n`` junk keys of 10 kB, then set maxmemory under what Redis counts against it: with
    ``noeviction`` it refuses every write that needs memory until more than that is freed.

    Redis leaves its AOF and replication buffers out of that count (``mem_not_counted_for_evict``),
    and what it uses moves with the worker's traffic, so the limit starts 300 kB under the
    counted memory and goes 300 kB lower until a probe write is refused (the junk, 2 MB, stays
    well above the margin: deleting it frees Redis again)."""
    for i in range(n):
        client.set(f"junk:{i}", JUNK)
    for step in range(1, 6):
        memory = client.info("memory")
        counted = int(memory["used_memory"]) - int(memory.get("mem_not_counted_for_evict", 0))
        client.config_set("maxmemory", str(counted - 300_000 * step))
        try:
            client.set("probe", "1")
        except Exception as exc:  # noqa: BLE001 (the refusal is the point)
            assert type(exc).__name__ == "OutOfMemoryError", exc
            return n
    raise AssertionError(f"Redis took writes above its maxmemory: {client.info('memory')}")


def one_line_naming_oom(result) -> None:
    assert result.returncode == EXIT_BAD_INPUT, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is full (redis.exceptions.OutOfMemoryError" in lines[0], result.stderr


def finish(stack, run_id: str):
    """``wait`` for the run; when it is flagged stuck (a task's outcome lost while Redis was full),
    ``restart`` it. A run that resumed meanwhile (a message put back) is waited on again."""
    waited = stack.cli("wait", run_id, "--json", timeout=180)
    for _ in range(3):
        if waited.returncode != EXIT_STUCK:
            return waited
        assert f"run {run_id} is stuck" in waited.stderr, waited.stderr
        waited = stack.cli("restart", run_id, "--json", timeout=180)
        if waited.returncode == EXIT_BAD_INPUT and "is running" in waited.stderr:  # it moved again
            waited = stack.cli("wait", run_id, "--json", timeout=180)
    return waited


def test_full_redis_fails_commands_in_one_line_bounds_connections_and_runs_finish(tmp_path):
    stack = make_stack(tmp_path, PIPELINE_STUCK_AFTER="15", **FAST_RESTORE)
    try:
        stack.worker("--pool", "prefork", "--concurrency", "2")
        client, ledger = stack.redis.client(), stack.ledger()
        run_id = stack.submit("--alphas", *ALPHAS, "--sleep", "1")
        poll(lambda: ledger.task_states(run_id).get(flow.train_key(0)) == "Running", "a train to run")
        junk = fill(client)

        one_line_naming_oom(stack.cli("sweep", "--alphas", "1.0", "--no-wait"))
        one_line_naming_oom(stack.cli("run", "--alpha", "0.5"))
        assert [r["id"] for r in ledger.list_runs()] == [run_id]  # nothing half-submitted
        assert client.llen("default") == 0 or run_id in client.lindex("default", 0)
        listed = stack.cli("runs", "--json")  # reading still works
        assert listed.returncode == 0 and [d["run_id"] for d in json.loads(listed.stdout)] == [run_id]

        samples = []
        for _ in range(12):  # the worker meets the full Redis: its connections must not grow
            samples.append(len(client.client_list()))
            time.sleep(1)
        assert max(samples) - samples[0] <= 10, samples

        client.delete(*[f"junk:{i}" for i in range(junk)])
        assert int(client.info("memory")["used_memory"]) < int(client.config_get("maxmemory")["maxmemory"])
        waited = finish(stack, run_id)
        assert waited.returncode == 0, (waited.stderr, stack.workers[0].text()[-6000:])
        doc = json.loads(waited.stdout)
        assert doc["state"] == "Success", doc
        assert doc["results"] == {a: tutorial_score(17, 100, float(a)) for a in ALPHAS}, doc
        assert all(w.proc.poll() is None for w in stack.workers), stack.workers[0].text()[-6000:]
        after = stack.cli("sweep", "--alphas", "1.0", "--json", timeout=120)  # and new runs go through again
        assert after.returncode == 0 and json.loads(after.stdout)["state"] == "Success", (
            after.stderr, stack.workers[0].text()[-6000:])
        assert all(w.proc.poll() is None for w in stack.workers)
    finally:
        stack.close()
