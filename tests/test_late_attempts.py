"""A late attempt: a task's first attempt, on a host cut off the network, ends only after a
redelivered copy of its message finished the task on another host (the cable was plugged
back in). The run record ignores it; before, its failure (its input already cleaned up)
marked the run's unfinished cleanups TriggerFailed. Ledger level, on the tests' Redis.
"""
from __future__ import annotations

import pytest

from pipeline.definition import flow
from pipeline.ledger.records import Ledger
from conftest import recorded_run

RUN = "20260101T000000Z-1a7e00"
N = 2
TRAIN = flow.train_key(0)


@pytest.fixture
def ledger(clean_redis) -> Ledger:
    """A two-branch run whose train_model[0] ran twice (same message) and succeeded on the second host."""
    book = recorded_run(clean_redis.url, RUN)
    for key in (flow.DOWNLOAD, flow.PREPROCESS):
        finish(book, key)
    assert begin(book, TRAIN) == ("run", 1)  # host A, then cut off
    assert begin(book, TRAIN) == ("run", 2)  # the redelivered message on host B
    finish(book, TRAIN, output="model_1.0_train_dataset.joblib", begun=True)
    finish(book, flow.evaluate_key(0))
    assert begin(book, flow.cleanup_key(0))[0] == "run"
    return book


def begin(book: Ledger, key: str) -> tuple[str, int]:
    result = book.begin_task(RUN, key, task_id=f"id-{key}")
    return result.verdict, result.attempts


def finish(book: Ledger, key: str, state: str = "Success", begun: bool = False, **kw) -> str:
    if not begun:
        assert begin(book, key)[0] == "run"
    return book.finish_task(RUN, key, state, output=kw.pop("output", key), task_id=f"id-{key}", **kw)


def snapshot(book: Ledger) -> tuple[dict, dict, list]:
    run = book.get_run(RUN)
    return run, book.task_states(RUN), book.tasks(RUN, flow.task_keys(N))


def test_a_late_failure_changes_nothing(ledger):
    before = snapshot(ledger)
    assert before[1][flow.cleanup_key(0)] == "Running" and before[1][flow.cleanup_key(1)] == "Pending"
    error = "FileNotFoundError: train_dataset.csv"  # its input was cleaned up meanwhile
    assert ledger.finish_task(RUN, TRAIN, "Failed", error=error, trigger_failed=flow.downstream(TRAIN, N),
                              task_id=f"id-{TRAIN}") == ""
    assert snapshot(ledger) == before


def test_a_late_success_changes_nothing_and_the_run_ends_normally(ledger):
    before = snapshot(ledger)
    assert finish(ledger, TRAIN, output="model_1.0_train_dataset.joblib", begun=True) == ""
    assert snapshot(ledger) == before
    rest = [flow.train_key(1), flow.evaluate_key(1), *(flow.cleanup_key(j) for j in range(flow.n_cleanups(N)))]
    ends = [finish(ledger, key, begun=key == flow.cleanup_key(0)) for key in rest]
    assert ends[:-1] == [""] * (len(rest) - 1) and ends[-1] == "Success"
    assert set(ledger.task_states(RUN).values()) == {"Success"}


def test_an_attempt_superseded_by_a_takeover_is_refused_while_the_new_one_runs(clean_redis):
    """Attempt 1's worker was declared dead mid-stage and attempt 2 began elsewhere; attempt 1
    then ends first (its worker came back). The ledger refuses it whole: its success, its
    failure and its retry, and the record stays attempt 2's until attempt 2 ends."""
    from pipeline.ledger.values import SupersededAttempt

    book = recorded_run(clean_redis.url, RUN)
    for key in (flow.DOWNLOAD, flow.PREPROCESS):
        finish(book, key)
    assert begin(book, TRAIN) == ("run", 1)  # the worker later declared dead
    assert begin(book, TRAIN) == ("run", 2)  # the live worker that took the message over
    before = snapshot(book)
    with pytest.raises(SupersededAttempt):
        book.finish_task(RUN, TRAIN, "Success", output="late", task_id=f"id-{TRAIN}", attempt=1)
    with pytest.raises(SupersededAttempt):
        book.finish_task(RUN, TRAIN, "Failed", error="late", trigger_failed=flow.downstream(TRAIN, N),
                         task_id=f"id-{TRAIN}", attempt=1)
    with pytest.raises(SupersededAttempt):
        book.set_retrying(RUN, TRAIN, "late", task_id=f"id-{TRAIN}", attempt=1)
    assert snapshot(book) == before and before[1][TRAIN] == "Running"
    book.finish_task(RUN, TRAIN, "Success", output="model", task_id=f"id-{TRAIN}", attempt=2)
    assert book.task_states(RUN)[TRAIN] == "Success" and book.outputs(RUN, [TRAIN])[TRAIN] == "model"
