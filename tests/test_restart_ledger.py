"""Restart and cancel at the ledger level, on the tests' redis-server (no worker needed)."""
from __future__ import annotations

import time

import pytest

from pipeline.definition import flow
from pipeline.definition.canvas import build_canvas
from pipeline.runs.dispatch import frozen_ids, freeze_ids
from pipeline.ledger.records import Ledger
from pipeline.runs.restart import keys_to_rerun
from pipeline.ledger.status import is_stuck
from conftest import recorded_run

RUN = "20260101T000000Z-abcdef"
KEYS = flow.task_keys(2)


@pytest.fixture
def ledger(clean_redis) -> Ledger:
    book = recorded_run(clean_redis.url, RUN)
    return book


def run_through(book: Ledger, key: str, state: str = "Success", **kw) -> str:
    assert book.begin_task(RUN, key, task_id=f"id-{key}").verdict == "run"
    return book.finish_task(RUN, key, state, output=kw.pop("output", key), task_id=f"id-{key}", **kw)


@pytest.mark.parametrize(
    "state, age, expected",
    [("Running", 301, True), ("Pending", 301, True), ("Running", 299, False),
     ("Failed", 10_000, False), ("Success", 10_000, False), ("Cancelled", 10_000, False)],
)
def test_is_stuck(state, age, expected):
    now = 1_000_000.0
    assert is_stuck({"state": state, "updated": repr(now - age)}, 300, now) is expected


def test_keys_to_rerun_in_flow_order():
    states = dict.fromkeys(KEYS, "Success")
    states.update({"train_model[1]": "Failed", "evaluate_model[1]": "TriggerFailed", "cleanup_file[0]": "Running"})
    assert keys_to_rerun(states, 2, stuck=False) == ["train_model[1]", "evaluate_model[1]"]
    assert keys_to_rerun(states, 2, stuck=True) == ["train_model[1]", "evaluate_model[1]", "cleanup_file[0]"]


def test_frozen_ids_cover_every_task_of_a_partial_canvas():
    from pipeline.celery_app import app

    only = ["train_model[1]", "evaluate_model[1]", "cleanup_file[0]", "cleanup_file[3]"]
    canvas = build_canvas(RUN, 2, "default", only, app=app)
    with pytest.raises(ValueError):
        frozen_ids(canvas)
    ids = freeze_ids(canvas)
    assert sorted(ids) == sorted(only) and len(set(ids.values())) == len(only)


def test_a_stale_message_can_neither_begin_retry_nor_finish(ledger):
    key = "download_dataset"
    assert ledger.begin_task(RUN, key, task_id="old-id").verdict == "stale"
    assert ledger.begin_task(RUN, key, task_id=f"id-{key}").verdict == "run"
    ledger.set_retrying(RUN, key, "boom", task_id="old-id")
    assert ledger.finish_task(RUN, key, "Failed", error="x", trigger_failed=KEYS[1:], task_id="old-id") == ""
    assert ledger.task_states(RUN)[key] == "Running"
    assert set(ledger.task_states(RUN).values()) == {"Running", "Pending"}
    ledger.finish_task(RUN, key, "Success", output="dataset.csv", task_id=f"id-{key}")
    assert ledger.tasks(RUN, [key])[0]["attempts"] == 1 and ledger.outputs(RUN, [key]) == {key: "dataset.csv"}


def test_reset_reruns_only_failed_tasks_and_recounts(ledger):
    run_through(ledger, "download_dataset")
    run_through(ledger, "preprocess_dataset", output=["train.csv", "test.csv"])
    run_through(ledger, "train_model[0]")
    run_through(ledger, "evaluate_model[0]")
    down = flow.downstream("train_model[1]", 2)
    assert run_through(ledger, "train_model[1]", "Failed", error="boom", trigger_failed=down) == "Failed"
    run = ledger.get_run(RUN)
    assert run["remaining"] == "0" and run["ended"]

    assert ledger.reset_tasks(RUN, "Failed", "0.0", {})[0] == "changed"
    rerun = keys_to_rerun(ledger.task_states(RUN), 2, stuck=False)
    assert rerun == ["train_model[1]", "evaluate_model[1]"] + [flow.cleanup_key(j) for j in range(5)]
    verdict, remaining, state = ledger.reset_tasks(RUN, "Failed", run["updated"], {k: f"new-{k}" for k in rerun})
    assert (verdict, remaining, state) == ("ok", 7, "Running")
    run = ledger.get_run(RUN)
    assert run["state"] == "Running" and "ended" not in run and run["restarts"] == "1" and run["cancelled"] == "0"
    rows = {row["key"]: row for row in ledger.tasks(RUN, KEYS)}
    assert rows["train_model[1]"]["state"] == "Pending" and rows["train_model[1]"]["error"] is None
    assert rows["train_model[1]"]["ended"] is None and rows["train_model[1]"]["attempts"] == 1
    assert rows["train_model[0]"]["state"] == "Success" and rows["train_model[0]"]["output"] == "train_model[0]"
    # the failed attempt's message is stale now; the new one runs
    assert ledger.begin_task(RUN, "train_model[1]", task_id="id-train_model[1]").verdict == "stale"
    assert ledger.begin_task(RUN, "train_model[1]", task_id="new-train_model[1]").attempts == 2
    # a second restart while this one runs is refused by the state check
    assert ledger.reset_tasks(RUN, "Failed", run["updated"], {})[0] == "changed"


def test_cancel_marks_unfinished_tasks_cancelled_and_restart_clears_it(ledger):
    run_through(ledger, "download_dataset")
    assert ledger.begin_task(RUN, "preprocess_dataset", task_id="id-preprocess_dataset").verdict == "run"
    verdict, stopped = ledger.cancel_run(RUN)
    assert verdict == "cancelled"
    assert stopped[0] == ("preprocess_dataset", "Running", "id-preprocess_dataset")
    assert [key for key, _, _ in stopped] == [k for k in KEYS if k != "download_dataset"]
    run = ledger.get_run(RUN)
    assert run["state"] == "Cancelled" and run["cancelled"] == "1" and run["remaining"] == "0"
    rows = ledger.tasks(RUN, KEYS)
    assert all(r["state"] == "Cancelled" and r["error"] == "cancelled" for r in rows[1:])
    assert ledger.begin_task(RUN, "train_model[0]", task_id="id-train_model[0]").verdict == "cancelled"
    # the running body ends later: ignored
    assert ledger.finish_task(RUN, "preprocess_dataset", "Success", output=["a", "b"],
                              task_id="id-preprocess_dataset") == ""
    assert ledger.outputs(RUN, ["preprocess_dataset"]) == {}
    assert ledger.cancel_run(RUN) == ("finished", [])

    rerun = keys_to_rerun(ledger.task_states(RUN), 2, stuck=False)
    assert rerun == KEYS[1:]
    verdict, remaining, _ = ledger.reset_tasks(RUN, "Cancelled", run["updated"], {k: f"new-{k}" for k in rerun})
    assert (verdict, remaining) == ("ok", len(KEYS) - 1)
    assert ledger.get_run(RUN)["cancelled"] == "0"
    assert ledger.begin_task(RUN, "preprocess_dataset", task_id="new-preprocess_dataset").verdict == "run"


def test_reset_of_a_stuck_run_that_had_nothing_left_finalizes_it(ledger):
    for key in KEYS:
        run_through(ledger, key, output={"file": "x", "score": 1.0} if key.startswith("evaluate") else key)
    ledger.update_run(RUN, state="Running", remaining=3, updated=repr(time.time() - 1000))
    run = ledger.get_run(RUN)
    assert is_stuck(run, 300, time.time())
    assert ledger.reset_tasks(RUN, "Running", run["updated"], {}) == ("ok", 0, "Success")
    assert ledger.get_run(RUN)["ended"]


def test_the_run_ends_no_earlier_than_its_last_task_whatever_the_callers_clocks(ledger, monkeypatch):
    """Two workers finish the last two tasks; the one that ends the run read its clock first."""
    import pipeline.ledger.records as ledger_module

    for key in KEYS[:-2]:
        run_through(ledger, key, output={"file": "x", "score": 1.0} if key.startswith("evaluate") else key)
    base = time.time()
    clock = iter([base, base + 0.5, base + 0.5, base + 0.2])  # begin, begin, finish (later), finish (earlier)
    monkeypatch.setattr(ledger_module.time, "time", lambda: next(clock))
    for key in KEYS[-2:]:
        assert ledger.begin_task(RUN, key, task_id=f"id-{key}").verdict == "run"
    assert ledger.finish_task(RUN, KEYS[-2], "Success", output="a", task_id=f"id-{KEYS[-2]}") == ""
    assert ledger.finish_task(RUN, KEYS[-1], "Success", output="b", task_id=f"id-{KEYS[-1]}") == "Success"
    monkeypatch.undo()
    latest = max(row["ended"] for row in ledger.tasks(RUN, KEYS))
    assert latest == pytest.approx(base + 0.5, abs=1e-3)
    assert float(ledger.get_run(RUN)["ended"]) == pytest.approx(latest, abs=1e-3)


def test_earlier_attempts_are_kept_for_the_timeline(ledger):
    """A retried attempt (Failed), a redelivered one (Unfinished) and a restarted one each
    stay in the task's history, once, with their times and error."""
    key = "download_dataset"
    assert ledger.begin_task(RUN, key, task_id=f"id-{key}").attempts == 1
    ledger.set_retrying(RUN, key, "ValueError: boom", task_id=f"id-{key}")
    assert ledger.begin_task(RUN, key, task_id=f"id-{key}").attempts == 2  # the retry
    assert ledger.begin_task(RUN, key, task_id=f"id-{key}").attempts == 3  # redelivered: no end recorded
    run_through(ledger, "preprocess_dataset")
    ledger.finish_task(RUN, key, "Success", output="dataset.csv", task_id=f"id-{key}")
    row = ledger.tasks(RUN, [key])[0]
    first, second = row["history"]
    assert (first["attempt"], first["state"], first["error"]) == (1, "Failed", "ValueError: boom")
    assert first["started"] <= first["ended"] <= second["started"]
    assert (second["attempt"], second["state"], second["ended"], second["error"]) == (2, "Unfinished", None, None)
    assert row["state"] == "Success" and row["error"] is None and row["started"] >= second["started"]

    down = flow.downstream("train_model[0]", 2)
    run_through(ledger, "train_model[0]", "Failed", error="boom", trigger_failed=down)
    run = ledger.get_run(RUN)
    rerun = keys_to_rerun(ledger.task_states(RUN), 2, stuck=False)
    assert ledger.reset_tasks(RUN, run["state"], run["updated"], {k: f"new-{k}" for k in rerun})[0] == "ok"
    assert ledger.begin_task(RUN, "train_model[0]", task_id="new-train_model[0]").attempts == 2
    (kept,) = ledger.tasks(RUN, ["train_model[0]"])[0]["history"]  # by the restart, not again by begin
    assert (kept["attempt"], kept["state"], kept["error"]) == (1, "Failed", "boom") and kept["ended"]
    assert ledger.tasks(RUN, ["evaluate_model[0]"])[0]["history"] == []  # TriggerFailed, never ran
