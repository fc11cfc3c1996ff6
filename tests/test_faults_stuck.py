"""Runs that can no longer finish are flagged stuck by ``status`` and finished by ``restart``.

Two real ways of losing a run: the chord's counter in the result backend disappears (the
cleanups are never sent), or a queued task message is dropped from its queue (a branch
never runs). Nothing times out in Celery for either; the run record stops changing.
"""
from __future__ import annotations

import json
import time

import pytest

from faultkit import assert_completed_once, make_stack, poll
from pipeline.definition import flow
pytestmark = pytest.mark.slow

TWO = ["1.0", "0.1"]
STUCK_AFTER = 8.0
"""The stack's PIPELINE_STUCK_AFTER. The first ``status`` of a lost run (a CLI subprocess:
interpreter start-up, imports, a Redis round trip) must answer within STUCK_AFTER + SLEEP
of the run's last progress to see it not stuck; at 3 s that was 3.5 s, tight on a loaded
2-core machine where starting a Python process alone can take seconds. 8 s leaves it 8.5 s;
each test waits about 5 s longer for the flag, and the flag is still required to come."""
SLEEP = 0.5


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One Redis and one single-slot prefork worker: tasks run one at a time, in queue order."""
    made = make_stack(tmp_path_factory.mktemp("stuck"), PIPELINE_STUCK_AFTER=str(STUCK_AFTER))
    made.worker("--pool", "prefork", "--concurrency", "1")
    yield made
    made.close()


def queued(client, queue: str) -> list[tuple[str, str]]:
    """``(raw message, Celery id)`` of every message waiting in ``queue``."""
    return [(raw, json.loads(raw)["headers"]["id"]) for raw in client.lrange(queue, 0, -1)]


def flagged_stuck_then_restarted(stack, run_id: str, lost: str) -> None:
    """``status`` says not stuck at first, stuck within a bounded time; ``restart`` finishes the run."""
    first = stack.status(run_id)
    assert (first["state"], first["stuck"]) == ("Running", False), first
    started = time.monotonic()
    doc = poll(lambda: (d := stack.status(run_id))["stuck"] and d, f"the run to be flagged stuck ({lost})", 30)
    assert time.monotonic() - started < STUCK_AFTER + SLEEP + 15
    assert doc["state"] == "Running"
    assert {t["key"]: t["state"] for t in doc["tasks"] if t["state"] != "Success"}  # what never ran

    restarted = stack.cli("restart", run_id, "--json")
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["state"] == "Success"
    assert stack.status(run_id)["stuck"] is False
    assert_completed_once(stack, run_id, TWO, {})  # what was lost ran once, after the restart


def test_lost_chord_counter_is_flagged_stuck_and_restart_finishes_the_run(stack):
    ledger, client = stack.ledger(), stack.redis.client()
    run_id = stack.submit("--alphas", *TWO, "--sleep", str(SLEEP))
    # the first evaluation to end creates the chord's list of header results: delete it
    counters = poll(lambda: list(client.scan_iter("*.j")), "the chord counter to appear", interval=0.005)
    client.delete(*counters)
    poll(lambda: all(ledger.task_states(run_id).get(flow.evaluate_key(i)) == "Success" for i in range(2)),
         "both evaluations to succeed")
    assert all(state == "Pending" for key, state in ledger.task_states(run_id).items() if key.startswith("cleanup"))
    flagged_stuck_then_restarted(stack, run_id, "chord counter deleted")


def test_dropped_task_message_is_flagged_stuck_and_restart_finishes_the_run(stack):
    ledger, client = stack.ledger(), stack.redis.client()
    run_id = stack.submit("--alphas", *TWO, "--sleep", str(SLEEP))
    trains = {flow.train_key(0), flow.train_key(1)}

    def waiting_train():
        ids = {celery_id: key for key, celery_id in ledger.task_ids(run_id).items() if key in trains}
        states = ledger.task_states(run_id)
        if not any(states.get(k) == "Running" for k in trains):
            return None
        return next(((raw, ids[i]) for raw, i in queued(client, "default") if i in ids), None)

    raw, dropped = poll(waiting_train, "one train to run while the other waits in the queue", interval=0.005)
    assert client.lrem("default", 1, raw) == 1
    other = (trains - {dropped}).pop()
    poll(lambda: ledger.task_states(run_id).get(flow.evaluate_key(flow.parse_key(other, 2)[1])) == "Success",
         "the other branch to finish")
    assert ledger.task_states(run_id)[dropped] == "Pending"
    flagged_stuck_then_restarted(stack, run_id, f"message of {dropped} dropped")
