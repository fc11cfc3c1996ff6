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
from pipeline.definition import flow
from pipeline.runs.submit import RECONNECT_EVERY

pytestmark = pytest.mark.slow

TWO = ["1.0", "0.1"]


def restart_redis_while(stack, keys: list[str], outage: float, workers: int = 1):
    """Run a two-alpha sweep; while every task of ``keys`` runs, stop Redis (SIGTERM: it
    fsyncs its append-only file) for ``outage`` seconds and start it again on the same port
    and directory. Return the run id and the output of a ``wait --json`` started before."""
    stack.worker("--pool", "prefork", "--concurrency", "2")
    ledger = stack.ledger()
    run_id = stack.submit("--alphas", *TWO, "--sleep", "1")
    waiter = subprocess.Popen([sys.executable, CLI, "wait", run_id, "--json"], cwd=ROOT, env=stack.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        poll(lambda: running(ledger, run_id, keys), f"{' and '.join(keys)} to run")
        stack.redis.proc.send_signal(signal.SIGTERM)
        assert stack.redis.proc.wait(15) == 0
        time.sleep(outage)
        stack.redis = start_redis(stack.redis.data_dir, stack.redis.port)
        out, err = waiter.communicate(timeout=90)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 0, (err, stack.workers[0].text())
    return run_id, json.loads(out), err


def test_redis_restarted_while_models_train_the_run_completes(tmp_path):
    """Default clients: a two-second restart is ridden over by every retry layer, so no task
    runs twice: every task has exactly one attempt and one begin and end line."""
    stack = make_stack(tmp_path, **FAST_RESTORE)
    try:
        run_id, doc, _ = restart_redis_while(stack, [flow.train_key(0), flow.train_key(1)], outage=2)
        assert doc["state"] == "Success"
        assert_completed_once(stack, run_id, TWO, {})
    finally:
        stack.close()


def test_redis_down_longer_than_the_clients_retries_during_the_chord_header(tmp_path):
    """Clients that give up after about 0.4 s, Redis away for 3 s while both evaluations
    (the chord's header ends) run: their bodies cannot record anything, so their messages
    go back and run again; the chord completes and its cleanups run once each."""
    stack = make_stack(tmp_path, PIPELINE_REDIS_RETRIES="2", **FAST_RESTORE)
    try:
        evaluations = [flow.evaluate_key(0), flow.evaluate_key(1)]
        run_id, doc, err = restart_redis_while(stack, evaluations, outage=3)
        assert doc["state"] == "Success"
        assert "lost the connection to Redis" in err and "reconnected to Redis; still waiting" in err
        worker_log = stack.workers[0].text()
        assert "unreachable during evaluate_model" in worker_log, worker_log
        # the lost attempt of each evaluation ran again; every other task (cleanups included) once
        assert_completed_once(stack, run_id, TWO, {key: 2 for key in evaluations})
    finally:
        stack.close()


def test_waiting_outlives_an_outage_longer_than_the_clients_retries(tmp_path):
    """wait_for_run keeps waiting through a Redis outage, whatever its length, and says so."""
    from conftest import stop_process
    from pipeline.ledger.records import Ledger
    from pipeline.redis_conn import make_client
    from pipeline.runs.submit import wait_for_run

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
