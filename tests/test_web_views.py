"""The run page's pure parts: folding a big run, choosing its rows, placing Gantt bars."""
from __future__ import annotations

from pipeline.definition import flow
from pipeline.web import gantt, schematic
from pipeline.web.run_view import FULL_TABLE_UPTO, notable


def doc_of(n: int, states: dict[str, str] | None = None) -> dict:
    states = states or {}
    tasks = [{"key": k, "state": states.get(k, "Success"), "attempts": 1, "started": None, "ended": None,
              "error": None, "earlier_attempts": []} for k in flow.task_keys(n)]
    return {"params": {"alphas": [float(i) for i in range(n)]}, "tasks": tasks}


def test_a_big_run_keeps_only_its_notable_children_and_rows_unless_asked():
    doc = doc_of(2000, {flow.train_key(7): "Failed", flow.evaluate_key(7): "TriggerFailed"})
    sc = schematic.build(doc)
    assert sc.fold_branches and sc.n_branches == 2000 and [b.index for b in sc.branches] == [7]
    assert sc.branch_counts[flow.TRAIN] == {"Success": 1999, "Failed": 1}
    assert sc.cleanups == [] and sc.n_cleanups == 2003 and sc.partial
    assert len(schematic.build(doc, show_all=True).branches) == 2000

    rows, hidden = notable(doc["tasks"], show_all=False)
    assert [r["key"] for r in rows] == [flow.train_key(7), flow.evaluate_key(7)] and hidden == 6005 - 2
    assert notable(doc["tasks"], show_all=True) == (doc["tasks"], 0)


def test_a_small_run_shows_everything_unfolded():
    doc = doc_of(3, {flow.train_key(1): "Failed"})
    sc = schematic.build(doc)
    assert not sc.fold_branches and len(sc.branches) == 3 and len(sc.cleanups) == 6 and not sc.partial
    assert len(doc_of(60)["tasks"]) <= FULL_TABLE_UPTO and notable(doc_of(60)["tasks"], False)[1] == 0


def test_gantt_bars_place_every_attempt_on_the_run_axis():
    task = {"state": "Success", "started": "2026-01-01T00:00:06.000Z", "ended": "2026-01-01T00:00:10.000Z",
            "earlier_attempts": [{"attempt": 1, "state": "Failed", "started": "2026-01-01T00:00:02.000Z",
                                  "ended": "2026-01-01T00:00:03.000Z"},
                                 {"attempt": 2, "state": "Unfinished", "started": "2026-01-01T00:00:04.000Z",
                                  "ended": None}]}
    start = gantt.seconds("2026-01-01T00:00:00.000Z")
    bars = gantt.bars(task, start, start + 10)
    assert [(b["left"], b["width"], b["state"]) for b in bars] == [
        (20.0, 10.0, "Failed"), (40.0, 20.0, "Unfinished"), (60.0, 40.0, "Success")]


def test_labels_take_pool_and_concurrency_from_the_workers_record_when_flower_has_no_reply():
    """Flower's inspect of a worker can time out (a loaded machine) and is not retried until an
    event: the page then shows what the worker's own heartbeat record says."""
    from pipeline.web.labels import labels_document

    records = {"default.1@h/1": {"queues": ["default"], "pool": "threads", "concurrency": 10, "seen": 99.0}}
    [default] = [q for q in labels_document(records, {}, {}, {}, now=100.0) if q["queue"] == "default"]
    assert [(w["pool"], w["concurrency"], w["heartbeat_age"]) for w in default["workers"]] == [("threads", 10, 1.0)]
    inspected = {"default.1@h": {"stats": {"pool": {"implementation": "celery.concurrency.prefork:TaskPool",
                                                    "max-concurrency": 4}}}}
    [default] = [q for q in labels_document(records, {}, {}, inspected, now=100.0) if q["queue"] == "default"]
    assert [(w["pool"], w["concurrency"]) for w in default["workers"]] == [("prefork", 4)]  # Flower's, when it has it
