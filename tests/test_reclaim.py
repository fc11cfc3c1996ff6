"""A dead worker costs seconds: its messages are reclaimed by its lost heartbeat (issue 18).

Real ``python cli.py worker`` processes on a redis-server of the test's own. A worker is
SIGKILLed as a whole (its process group, as the OOM killer or a lost spot instance does)
with another worker already running; with default settings (visibility timeout 3600 s)
its tasks must run again on the live worker within 30 s. And never a duplicate from
slowness: a live worker keeps a message however long it holds it, and a worker that
comes back after it was declared dead has its late result ignored.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from faultkit import (assert_completed_once, block_model_files, kill_group, log_lines, make_stack, poll,
                      running, unblock)
from pipeline.definition import flow
from pipeline.worker.kombu_redis import OWNERS_KEY
from test_stages import tutorial_score

pytestmark = pytest.mark.slow

SIX = ["1.0", "0.1", "0.01", "0.001", "0.0001", "1e-05"]

RECOVERY_BOUND = 30.0
"""Seconds from the kill to the killed tasks' new start, the issue's bound. Far below the
visibility timeout (3600 s), the only thing that brought them back before; the design's
window is at most PIPELINE_WORKER_TTL + PIPELINE_RECLAIM_INTERVAL = 20 s (docs/reliability.md),
the rest is slack for a loaded two-core machine."""


def held_keys(stack, run_id: str, worker) -> set[str]:
    """Task keys of ``run_id`` whose messages ``worker`` holds unacknowledged now."""
    r = stack.redis.client()
    ids = {tid: key for key, tid in stack.ledger().task_ids(run_id).items()}
    tags = [t for t, owner in r.hgetall(OWNERS_KEY).items() if owner.endswith(f"/{worker.proc.pid}")]
    keys = set()
    for raw in r.hmget("unacked", tags) if tags else []:
        if raw:
            task_id = json.loads(raw)[0]["headers"]["id"]
            keys.add(ids.get(task_id, task_id))
    return keys


def finish(stack, run_id: str, within: float = 200) -> None:
    """``wait`` for the run (at most ``within`` seconds); on failure say where everything is."""
    waited = stack.cli("wait", run_id, "--json", "--timeout", str(within), timeout=within + 60)
    if waited.returncode != 0:
        r = stack.redis.client()
        where = {"states": stack.ledger().task_states(run_id), "queued": r.llen("default"),
                 "unacked": r.hlen("unacked"), "holders": r.hgetall(OWNERS_KEY),
                 "workers": sorted(r.scan_iter("pipeline:workers:*"))}
        logs = "\n".join(f"--- {w.log.name}\n{w.text()[-3000:]}" for w in stack.workers)
        raise AssertionError(f"wait exited {waited.returncode}: {waited.stderr}\n{where}\n{logs}")


def kill_while_running(stack, run_id: str, victim, stage: str, slots: int = 2) -> tuple[set[str], float]:
    """Wait until ``victim`` holds ``slots`` begun ``stage`` tasks of the run (its whole
    prefetch, ``--concurrency slots``), then SIGKILL its group.

    Holding its whole prefetch, the worker is not fetching: a kill while it holds fewer can
    land in the milliseconds in which kombu has popped the next message (BRPOP) but not yet
    recorded it as unacknowledged; such a message is in no queue and no unacked entry, so no
    reclaim can find it (the run is flagged stuck and ``restart`` finishes it:
    docs/reliability.md, tests/test_faults_stuck.py). That window is not what this tests.
    """
    ledger = stack.ledger()

    def ready() -> set[str]:
        held = held_keys(stack, run_id, victim)
        ok = (len(held) == slots and all(k.startswith(stage) for k in held)
              and running(ledger, run_id, sorted(held)))
        return held if ok else set()

    held = poll(ready, f"the victim to run {stage} tasks", 120, interval=0.05)
    kill_group(victim)
    return held, time.time()


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_killed_worker_tasks_run_again_on_a_live_worker_within_seconds(tmp_path, pool):
    """Default settings, the issue's scenario: six alphas, --sleep 2, a second worker running."""
    stack = make_stack(tmp_path)
    try:
        victim = stack.worker("--pool", pool, "--concurrency", "2", name="victim")
        survivor = stack.worker("--pool", pool, "--concurrency", "2", name="survivor")
        ledger = stack.ledger()
        run_id = stack.submit("--alphas", *SIX, "--sleep", "2")
        killed, killed_at = kill_while_running(stack, run_id, victim, flow.TRAIN)

        finish(stack, run_id)
        ended = time.time()
        rows = {r["key"]: r for r in ledger.tasks(run_id, sorted(killed))}
        restarted = min(r["started"] for r in rows.values())
        assert restarted - killed_at < RECOVERY_BOUND, (restarted - killed_at, survivor.text())
        assert "whose heartbeat expired" in survivor.text()
        assert_completed_once(stack, run_id, SIX, {k: 2 for k in killed})
        r = stack.redis.client()
        assert r.hlen("unacked") == 0 and r.hlen(OWNERS_KEY) == 0
        print(f"\n[{pool}] killed holding {sorted(killed)}: restarted {restarted - killed_at:.1f} s "
              f"after the kill, run ended {ended - killed_at:.1f} s after it")
    finally:
        stack.close()


def test_retry_waiting_for_its_countdown_in_a_killed_worker_is_reclaimed(tmp_path):
    """The retry's ETA message sits unacknowledged in the killed worker: reclaimed like the rest.
    (Its countdown, 10 s, leaves time to start the live worker before the kill.)"""
    stack = make_stack(tmp_path)
    try:
        victim = stack.worker("--pool", "prefork", "--concurrency", "2", name="victim")
        ledger = stack.ledger()
        run_id = stack.submit("--alphas", "1.0", "0.1", "--sleep", "1", "--retries", "1", "--retry-delay", "10")
        run_dir = stack.artifacts / run_id
        poll(lambda: run_dir.is_dir(), "the run directory", 60, interval=0.01)
        blocks = block_model_files(run_dir, ["1.0", "0.1"])  # both trains fail once
        trains = [flow.train_key(0), flow.train_key(1)]
        poll(lambda: all(ledger.task_states(run_id).get(k) == "Retrying" for k in trains), "both trains to retry")
        poll(lambda: held_keys(stack, run_id, victim) == set(trains), "only the two retry messages to be held", 10,
             interval=0.01)
        stack.worker("--pool", "prefork", "--concurrency", "2", name="survivor")
        kill_group(victim)
        killed_at = time.time()
        unblock(blocks)
        errors = {r["key"]: r["error"] for r in ledger.tasks(run_id, trains)}

        finish(stack, run_id)
        restarted = min(r["started"] for r in ledger.tasks(run_id, trains))
        print(f"\n[redis, retry countdown] the waiting retries began {restarted - killed_at:.1f} s after the kill")
        assert restarted - killed_at < RECOVERY_BOUND, restarted - killed_at
        assert all("IsADirectoryError" in e or "OSError" in e for e in errors.values()), errors
        assert_completed_once(stack, run_id, ["1.0", "0.1"], {k: 2 for k in trains})
    finally:
        stack.close()


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_live_workers_long_stage_outlasting_the_visibility_timeout_runs_once(tmp_path, pool):
    """Workers whose visibility timeout (2 s, scanned every 0.5 s) and heartbeat lifetime (3 s,
    refreshed every second, reclaimers looking every second) each stage (8 s) outlasts several
    times, on both pools: kombu alone would put every message back mid-stage, and a reclaimer
    that took a slow heartbeat for a dead worker would hand it to the other worker. The
    holder's heartbeat keeps it: every task runs exactly once (the issue's ten-minute stage,
    at a scale a test can wait for: what counts is the ratio of stage to timeouts)."""
    short = {"PIPELINE_VISIBILITY_TIMEOUT": "2", "PIPELINE_UNACKED_RESTORE_INTERVAL": "0.5",
             "PIPELINE_UNACKED_RESTORE_THROTTLE": "1", "PIPELINE_WORKER_TTL": "3", "PIPELINE_WORKER_HEARTBEAT": "1",
             "PIPELINE_RECLAIM_INTERVAL": "1"}
    stack = make_stack(tmp_path)  # the CLI keeps the default timeout, which --sleep 8 must stay below
    try:
        for name in ("first", "second"):
            stack.worker("--pool", pool, "--concurrency", "2", name=name, env_extra=short)
        run_id = stack.submit("--alphas", "1.0", "--sleep", "8")
        finish(stack, run_id)
        assert_completed_once(stack, run_id, ["1.0"], {})
        assert not any("reclaimed" in w.text() or "heartbeat expired" in w.text() for w in stack.workers)
    finally:
        stack.close()


def test_a_worker_back_after_it_was_declared_dead_has_its_late_result_ignored(tmp_path):
    """The worker running train_model is frozen (SIGSTOP: a long GC pause, a host cut off and
    plugged back) until its heartbeat expires and a live worker begins the task again; then it
    resumes and ends its attempt first. The ledger refuses that late result: the task's end,
    output and successor come from the live worker's attempt, and nothing runs twice after it."""
    quick = {"PIPELINE_WORKER_TTL": "3", "PIPELINE_WORKER_HEARTBEAT": "1", "PIPELINE_RECLAIM_INTERVAL": "1"}
    sleep = 15.0  # long enough to start the live worker (seconds on a loaded machine) mid-stage
    stack = make_stack(tmp_path, **quick)
    try:
        frozen = stack.worker("--pool", "threads", "--concurrency", "1", name="frozen")
        ledger = stack.ledger()
        train = flow.train_key(0)
        run_id = stack.submit("--alphas", "1.0", "--sleep", str(sleep))
        poll(lambda: running(ledger, run_id, [train]), "train_model to run on the first worker", 120)
        first_start = ledger.tasks(run_id, [train])[0]["started"]
        stack.worker("--pool", "threads", "--concurrency", "2", name="live")
        assert time.time() < first_start + sleep - 4, "the live worker took too long to start: train_model ended"
        os.killpg(frozen.proc.pid, signal.SIGSTOP)
        try:
            poll(lambda: ledger.tasks(run_id, [train])[0]["attempts"] == 2, "the live worker to take train_model over",
                 60)
            second_start = ledger.tasks(run_id, [train])[0]["started"]
            time.sleep(max(0.0, first_start + sleep + 0.5 - time.time()))  # the frozen attempt's sleep is over
        finally:
            os.killpg(frozen.proc.pid, signal.SIGCONT)
        resumed = time.time()
        assert ledger.task_states(run_id)[train] == "Running", "the live attempt ended before the test resumed"
        poll(lambda: "late attempt ignored" in frozen.text(), "the frozen worker to end its attempt", 60)

        finish(stack, run_id)
        row = ledger.tasks(run_id, [train])[0]
        assert (row["state"], row["attempts"]) == ("Success", 2)
        assert row["ended"] - second_start >= sleep - 0.5, "the task's end is the late attempt's, not the live one's"
        assert row["ended"] > resumed
        lines = log_lines(ledger, run_id)
        for key in flow.task_keys(1):
            stage = key.split("[")[0]
            if key != train:
                assert lines.count((key, f"{stage} begin")) == 1, (key, lines)
                assert ledger.tasks(run_id, [key])[0]["attempts"] == 1
        score = ledger.outputs(run_id, [flow.evaluate_key(0)])[flow.evaluate_key(0)]["score"]
        assert score == tutorial_score(17, 100, 1.0)
        r = stack.redis.client()
        poll(lambda: r.hlen("unacked") == 0 and r.hlen(OWNERS_KEY) == 0, "every message acknowledged", 10)
    finally:
        stack.close()
