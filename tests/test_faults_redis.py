"""Redis restarted mid-run (append-only persistence): workers and the waiting CLI ride over it."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import CLI, ROOT, start_redis
from faultkit import FAST_RESTORE, assert_completed_once, make_stack, poll, running
from pipeline import flow
from pipeline.runs import RECONNECT_EVERY

pytestmark = pytest.mark.slow

TWO = ["1.0", "0.1"]


@pytest.fixture
def stack(tmp_path):
    made = make_stack(tmp_path, **FAST_RESTORE)
    yield made
    made.close()


def test_redis_restarted_mid_run_the_run_completes(stack):
    worker = stack.worker("--pool", "prefork", "--concurrency", "2")
    ledger = stack.ledger()
    run_id = stack.submit("--alphas", *TWO, "--sleep", "1")
    waiter = subprocess.Popen([sys.executable, CLI, "wait", run_id, "--json"], cwd=ROOT, env=stack.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        trains = [flow.train_key(0), flow.train_key(1)]
        poll(lambda: running(ledger, run_id, trains), "both train_model tasks to run")
        stack.redis.proc.send_signal(signal.SIGTERM)  # redis fsyncs the append-only file on shutdown
        assert stack.redis.proc.wait(15) == 0
        stack.redis = start_redis(stack.redis.data_dir, stack.redis.port)
        out, err = waiter.communicate(timeout=90)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 0, (err, worker.text())
    doc = json.loads(out)
    assert doc["state"] == "Success"
    assert_completed_once(stack, run_id, TWO, {})


def test_waiting_outlives_an_outage_longer_than_the_clients_retries(tmp_path):
    """wait_for_run keeps waiting through a Redis outage, whatever its length, and says so."""
    from conftest import stop_process
    from pipeline.ledger import Ledger
    from pipeline.redis_conn import make_client
    from pipeline.runs import wait_for_run

    server = start_redis(tmp_path / "redis")
    run_id = "20260101T000000Z-0a7a9e"
    try:
        Ledger(make_client(server.url), 3600).create_run(run_id, {"id": run_id, "state": "Running"}, ["download_dataset"])
        impatient = Ledger(make_client(server.url, retries=1), 3600)  # gives up at once, unlike the CLI's
        events: list[str] = []
        outcome: list[str] = []
        waiter = threading.Thread(target=lambda: outcome.append(wait_for_run(
            impatient, run_id, on_connection=lambda e: events.append("lost" if e else "back"))), daemon=True)
        waiter.start()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(15) == 0
        poll(lambda: events == ["lost"], "the waiter to notice the outage", 30)
        time.sleep(2 * RECONNECT_EVERY)  # it keeps trying, and keeps waiting
        assert waiter.is_alive() and not outcome
        server = start_redis(server.data_dir, server.port)  # same port, same append-only file
        Ledger(make_client(server.url), 3600).update_run(run_id, state="Success")
        waiter.join(30)
        assert outcome == ["Success"] and events == ["lost", "back"]
    finally:
        stop_process(server.proc)
