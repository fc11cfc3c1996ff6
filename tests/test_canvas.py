"""The canvas's shape, checked without a broker."""
from __future__ import annotations

from celery.canvas import _chain, _chord, group

from pipeline.definition import flow
from pipeline.definition.canvas import build_canvas
from pipeline.celery_app import app


def names(sigs) -> list[str]:
    return [s.task for s in sigs]


def test_full_sweep_shape():
    canvas = build_canvas("r1", 6, "default", app=app)
    assert isinstance(canvas, _chain)
    download, preprocess, fan = canvas.tasks
    assert (download.task, preprocess.task) == ("pipeline.download_dataset", "pipeline.preprocess_dataset")
    assert isinstance(fan, _chord)
    header = fan.tasks
    assert len(header) == 6
    for i, branch in enumerate(header):
        assert names(branch.tasks) == ["pipeline.train_model", "pipeline.evaluate_model"]
        assert [s.kwargs["key"] for s in branch.tasks] == [flow.train_key(i), flow.evaluate_key(i)]
    body = fan.body
    assert isinstance(body, group)
    assert [s.kwargs["key"] for s in body.tasks] == [flow.cleanup_key(j) for j in range(9)]


def test_messages_carry_only_run_id_and_key_and_are_routed():
    canvas = build_canvas("r1", 2, "gpu", app=app)
    sigs = [canvas.tasks[0], canvas.tasks[1], *[s for b in canvas.tasks[2].tasks for s in b.tasks],
            *canvas.tasks[2].body.tasks]
    assert len(sigs) == len(flow.task_keys(2))
    for sig in sigs:
        assert sig.immutable and sig.args == () and set(sig.kwargs) == {"run_id", "key"}
        assert sig.kwargs["run_id"] == "r1" and sig.options["queue"] == "gpu"


def test_restart_subset_contains_only_named_tasks():
    only = [flow.train_key(2), flow.evaluate_key(2), flow.evaluate_key(4)] + [flow.cleanup_key(j) for j in range(9)]
    canvas = build_canvas("r1", 6, "default", only=only, app=app)
    assert isinstance(canvas, _chord)
    header = canvas.tasks
    assert [s.kwargs["key"] for s in header[0].tasks] == [flow.train_key(2), flow.evaluate_key(2)]
    assert header[1].kwargs["key"] == flow.evaluate_key(4)
    assert len(canvas.body.tasks) == 9


def test_only_cleanup_left_has_no_empty_header():
    canvas = build_canvas("r1", 3, "default", only=[flow.cleanup_key(1)], app=app)
    assert canvas.task == "pipeline.cleanup_file" and canvas.kwargs["key"] == flow.cleanup_key(1)
    assert build_canvas("r1", 3, "default", only=[], app=app) is None


def test_downstream_and_cleanup_sources():
    assert flow.downstream(flow.train_key(1), 3) == [flow.evaluate_key(1)] + [flow.cleanup_key(j) for j in range(6)]
    assert flow.downstream(flow.DOWNLOAD, 1) == [k for k in flow.task_keys(1) if k != flow.DOWNLOAD]
    assert flow.downstream(flow.cleanup_key(0), 1) == []
    assert [flow.cleanup_source(j, 2) for j in range(5)] == [
        (flow.DOWNLOAD, None), (flow.train_key(0), None), (flow.train_key(1), None),
        (flow.PREPROCESS, 0), (flow.PREPROCESS, 1)]
