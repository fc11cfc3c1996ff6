"""Redis SIGKILLed again and again at random moments of runs (append-only persistence on).

Every kill drops every worker's connections at once; Celery's consumer closes its kombu
connection and reconnects. Before the workaround in ``pipeline/worker/kombu_redis.py``
a channel of the closed connection (closing it, or acking a task that ended after the
reconnection) raised ``AttributeError: 'NoneType' object has no attribute 'hostname'``
and the worker exited with "Unrecoverable error". Here both kinds of pool (prefork and
threads) must stay alive through every kill, and every run submitted during the kills
must end Success with the tutorial's values.
"""
from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from conftest import start_redis
from faultkit import FAST_RESTORE, make_stack
from pipeline.definition import flow
from test_stages import tutorial_score

pytestmark = pytest.mark.slow

KILLS = 20
"""Redis SIGKILLs in the test: the issue's 20. Without the workaround a worker died within
the first 4 to 14 kills in each of our tries, so 20 shows it; each kill costs about 2 s."""

ALPHAS = ["1.0", "0.1", "0.01"]


def alive(stack) -> list[str]:
    """Problems: the log of every worker process that has exited (empty when all run)."""
    return [w.text()[-3000:] for w in stack.workers if w.proc.poll() is not None]


def test_repeated_redis_sigkills_leave_every_worker_alive_and_every_run_successful(tmp_path):
    seed = int(os.environ.get("FAULT_SEED") or time.time())
    rng = random.Random(seed)
    stack = make_stack(tmp_path, **FAST_RESTORE)
    try:
        stack.worker("--pool", "prefork", "--concurrency", "2", name="prefork")
        stack.worker("--pool", "threads", "--concurrency", "4", name="threads")
        run_ids = []
        for kill in range(KILLS):
            if kill % 5 == 0:
                run_ids.append(stack.submit("--alphas", *ALPHAS, "--sleep", "0.5"))
            time.sleep(rng.uniform(0.2, 2.0))
            stack.redis.proc.send_signal(signal.SIGKILL)
            stack.redis.proc.wait(15)
            time.sleep(rng.uniform(0.0, 0.5))
            stack.redis = start_redis(stack.redis.data_dir, stack.redis.port)
            assert not alive(stack), (f"seed {seed}, kill {kill + 1}", alive(stack))

        ledger = stack.ledger()
        for run_id in run_ids:
            waited = stack.cli("wait", run_id, "--json", timeout=180)
            assert waited.returncode == 0, (f"seed {seed}", waited.stderr)
            doc = json.loads(waited.stdout)
            assert doc["state"] == "Success", doc
            assert doc["results"] == {a: tutorial_score(17, 100, float(a)) for a in ALPHAS}, doc
            rows = ledger.tasks(run_id, flow.task_keys(len(ALPHAS)))
            assert all(row["state"] == "Success" for row in rows), rows
            assert sorted(p.name for p in (stack.artifacts / run_id).iterdir()) == sorted(
                f"eval_model_{float(a)}_train_dataset.txt" for a in ALPHAS)
        assert not alive(stack), (f"seed {seed}", alive(stack))
    finally:
        stack.close()
