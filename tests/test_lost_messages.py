"""A run whose message is gone from the broker is sent again by the workers, by itself.

The several-hosts test (tests/test_multihost.py) loses a message for real, to a host cut
off the network in the second of its pending BRPOP. Here the loss is made by hand and
without namespaces: the run waits in a queue nobody consumes, its message is deleted from
that list, then a worker of the queue starts. With ``PIPELINE_LOST_AFTER`` short, a
worker finds the run idle, none of its tasks running and none of its messages queued or
unacknowledged, and restarts it (pipeline/worker/lost.py). The negative test: a run whose
message merely waits in the queue behind a busy worker's task is left alone.
"""
from __future__ import annotations

import time

import pytest

from faultkit import assert_completed_once, make_stack, poll
from pipeline.definition import flow
from pipeline.worker.lost import CONFIRM_AFTER, UNACKED_KEY

pytestmark = pytest.mark.slow

LOST_AFTER = 5.0
"""The stacks' PIPELINE_LOST_AFTER (the default is 30 s; the several-hosts test uses that)."""

MARGIN = 25.0
"""Seconds beyond the threshold for the check to run twice, the restart and the run itself."""


@pytest.fixture
def stack(tmp_path):
    made = make_stack(tmp_path, PIPELINE_LOST_AFTER=str(LOST_AFTER))
    yield made
    made.close()


def submit_run(stack, label: str, *args: str) -> str:
    """``run --alpha 1.0 --label LABEL --no-wait ARGS``; return the run id."""
    sent = stack.cli("run", "--alpha", "1.0", "--label", label, "--no-wait", *args)
    assert sent.returncode == 0, sent.stderr
    return sent.stdout.strip()


def test_a_run_whose_message_was_deleted_finishes_by_itself(stack):
    ledger, client = stack.ledger(), stack.redis.client()
    run_id = submit_run(stack, "lonely")
    assert client.llen("lonely") == 1
    assert client.delete("lonely") == 1  # the download message: gone, as into a dead connection
    lost_at = time.time()
    assert client.hlen(UNACKED_KEY) == 0
    old_ids = ledger.task_ids(run_id)

    worker = stack.worker("--pool", "threads", "--concurrency", "2", "--label", "lonely")
    updated = float(ledger.get_run(run_id)["updated"])
    poll(lambda: ledger.get_run(run_id)["state"] == "Success", "the lost run to finish by itself",
         LOST_AFTER + MARGIN + (lost_at - updated) + 30)
    done_at = time.time()
    print(f"\n[lost] run done {done_at - lost_at:.1f} s after its message was deleted "
          f"({done_at - updated:.1f} s after its last progress; PIPELINE_LOST_AFTER={LOST_AFTER:g})")
    assert done_at - updated < LOST_AFTER + MARGIN, f"took {done_at - updated:.1f} s from the last progress"
    assert done_at - updated > LOST_AFTER, "restarted before the run was idle for PIPELINE_LOST_AFTER"

    run = ledger.get_run(run_id)
    assert run["restarts"] == "1", run
    new_ids = ledger.task_ids(run_id)
    assert all(new_ids[k] != old_ids[k] for k in flow.task_keys(1)), (old_ids, new_ids)
    assert_completed_once(stack, run_id, ["1.0"], {})  # every task attempts 1, only eval files
    warned = [line for line in worker.text().splitlines() if f"run {run_id} made no progress" in line]
    assert len(warned) == 1, worker.text()
    assert "sent download_dataset, preprocess_dataset, train_model[0]" in warned[0], warned


def test_a_run_whose_message_waits_behind_a_busy_worker_is_left_alone(stack):
    ledger, client = stack.ledger(), stack.redis.client()
    worker = stack.worker("--pool", "threads", "--concurrency", "1", "--label", "busy")
    busy = submit_run(stack, "busy", "--sleep", "20")
    poll(lambda: ledger.task_states(busy)["download_dataset"] == "Running", "the busy run's first task", 30)
    waiting = submit_run(stack, "busy")
    ids = ledger.task_ids(waiting)
    updated = float(ledger.get_run(waiting)["updated"])

    def message_present() -> bool:
        raws = client.lrange("busy", 0, -1) + client.hvals(UNACKED_KEY)
        return any(ids["download_dataset"] in raw for raw in raws)

    # Idle well past its threshold (and two looks of every check), its message queued or prefetched all along.
    until = updated + LOST_AFTER + CONFIRM_AFTER + 8
    while time.time() < until:
        assert message_present(), "the waiting run's message left the broker"
        assert ledger.task_states(busy)["download_dataset"] == "Running", "the busy task ended too soon"
        time.sleep(0.5)
    run = ledger.get_run(waiting)
    assert run["state"] == "Pending" and float(run["updated"]) == updated, run
    assert ledger.task_ids(waiting) == ids
    assert (run.get("restarts") or "0") == "0", run
    assert "made no progress" not in worker.text()
