"""A lost acknowledgement, made certain: the message of a task already recorded Success comes back.

When a worker's acknowledgement never reaches Redis (Redis restarted between the task's end
and its ack, a connection cut at that moment) kombu puts the message back and it runs again.
The test of a Redis restart (tests/test_faults_redis.py) cannot make that happen for sure;
here the redelivery is made by hand: the raw message of ``train_model[0]`` is copied from
kombu's ``unacked`` hash while it runs and pushed back onto its queue once the run has
ended, exactly as kombu's restore would push it (``redelivered`` set).
"""
from __future__ import annotations

import json
import re
import time

import pytest

from faultkit import assert_completed_once, make_stack, poll, running
from pipeline.definition import flow

pytestmark = pytest.mark.slow

QUEUE = "default"
UNACKED = "unacked"
"""kombu's Redis transport: the queue's list, and the hash of taken messages by delivery tag."""


def succeeded_lines(log: str, task: str, task_id: str) -> list[str]:
    """Celery's ``--log-tasks`` lines saying the message ``task_id`` of ``task`` succeeded,
    each ending with the value the task returned (its repr)."""
    return re.findall(rf"Task pipeline\.{task}\[{re.escape(task_id)}\] succeeded in [0-9.e-]+s: (.*)", log)


def taken_message(client, task_id: str) -> dict | None:
    """The raw message of Celery id ``task_id`` among the unacknowledged ones, else None."""
    for raw in client.hvals(UNACKED):
        message, _exchange, _routing_key = json.loads(raw)
        if message["headers"]["id"] == task_id:
            return message
    return None


def test_redelivered_message_of_a_succeeded_task_returns_its_stored_output_without_running(tmp_path):
    stack = make_stack(tmp_path)
    try:
        worker = stack.worker("--pool", "threads", "--concurrency", "3", "--log-tasks")
        ledger, broker = stack.ledger(), stack.redis.client()
        train = flow.train_key(0)
        run_id = stack.submit("--alphas", "1.0", "--sleep", "1")
        poll(lambda: running(ledger, run_id, [train]), "train_model[0] to run")
        train_id = ledger.task_ids(run_id)[train]
        message = poll(lambda: taken_message(broker, train_id), "train_model[0]'s message in the unacked hash", 10)

        waited = stack.cli("wait", run_id, "--json")
        assert waited.returncode == 0, (waited.stderr, worker.text())
        assert_completed_once(stack, run_id, ["1.0"], {})
        stored = ledger.outputs(run_id, [train])[train]
        assert succeeded_lines(worker.text(), "train_model", train_id) == [repr(stored)]
        assert taken_message(broker, train_id) is None  # acknowledged: only our copy is left
        eval_file = stack.artifacts / run_id / "eval_model_1.0_train_dataset.txt"
        before = (eval_file.read_bytes(), eval_file.stat().st_mtime_ns)
        run_before = ledger.get_run(run_id)

        # what kombu's restore of an unacknowledged message pushes back (kombu/transport/redis.py)
        message["headers"]["redelivered"] = True
        message["properties"]["delivery_info"]["redelivered"] = True
        broker.lpush(QUEUE, json.dumps(message))
        sent = time.time()

        # the worker took it and returned the output recorded the first time, not None
        poll(lambda: len(succeeded_lines(worker.text(), "train_model", train_id)) == 2,
             "the worker to process the redelivered train_model[0]", 30)
        assert succeeded_lines(worker.text(), "train_model", train_id) == [repr(stored)] * 2, worker.text()
        assert f"not running {train} of run {run_id}" not in worker.text()
        # the chain's next link, sent again by the redelivered message, does nothing either
        eval_id = ledger.task_ids(run_id)[flow.evaluate_key(0)]
        poll(lambda: len(succeeded_lines(worker.text(), "evaluate_model", eval_id)) == 2,
             "the worker to process evaluate_model[0] sent again", 30)
        time.sleep(max(0.0, sent + 2 - time.time()))  # room for anything else it might set off
        assert worker.text().count("Task pipeline.fan_out[") == 2, worker.text()  # received, succeeded: once

        # the stage did not run again: one attempt, one begin line, no model file rewritten
        assert ledger.tasks(run_id, [train])[0]["attempts"] == 1
        logs = stack.cli("logs", run_id)
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout.count("train_model begin") == 1, logs.stdout
        assert_completed_once(stack, run_id, ["1.0"], {})  # also: no model file came back
        assert (eval_file.read_bytes(), eval_file.stat().st_mtime_ns) == before
        assert ledger.get_run(run_id) == run_before  # not even the run's `updated` moved
    finally:
        stack.close()
