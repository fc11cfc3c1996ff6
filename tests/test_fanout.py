"""The compacted chord body: small on the wire, the same tasks when it runs."""
from __future__ import annotations

import json

from celery.canvas import group

from pipeline.definition import flow
from pipeline.definition.canvas import build_canvas, task_signature
from pipeline.celery_app import app
from pipeline.runs.fanout import FAN_OUT_TASK, compact, decode_keys, encode_keys


def test_keys_round_trip_as_ranges_in_order():
    keys = [flow.cleanup_key(j) for j in (0, 1, 2, 5, 6)] + [flow.DOWNLOAD, flow.train_key(3)]
    spec = encode_keys(keys)
    assert spec == [["cleanup_file", 0, 3], ["cleanup_file", 5, 7], ["download_dataset"], ["train_model", 3, 4]]
    assert decode_keys(json.loads(json.dumps(spec))) == keys


def test_wide_sweep_body_becomes_one_small_signature():
    canvas = compact(build_canvas("r1", 2000, "gpu", app=app), app)
    body = canvas.tasks[2].body
    assert body.task == FAN_OUT_TASK and body.immutable and body.options["queue"] == "gpu"
    assert body.kwargs["run_id"] == "r1" and body.kwargs["queue"] == "gpu"
    assert decode_keys(body.kwargs["keys"]) == [flow.cleanup_key(j) for j in range(2003)]
    assert len(json.dumps(body)) < 400
    header = canvas.tasks[2].tasks
    assert len(header) == 2000 and [s.kwargs["key"] for s in header[7].tasks] == [
        flow.train_key(7), flow.evaluate_key(7)]


def test_restart_subset_and_other_bodies():
    only = [flow.evaluate_key(1), flow.cleanup_key(0), flow.cleanup_key(4)]
    restart = compact(build_canvas("r1", 3, "default", only=only, app=app), app)
    assert decode_keys(restart.body.kwargs["keys"]) == [flow.cleanup_key(0), flow.cleanup_key(4)]
    single = build_canvas("r1", 3, "default", only=[flow.evaluate_key(0), flow.cleanup_key(1)], app=app)
    assert compact(single, app).body.task == "pipeline.cleanup_file"
    foreign = group([task_signature("r1", flow.cleanup_key(0), "q", app), task_signature("r2", flow.cleanup_key(0), "q", app)])
    mixed = build_canvas("r1", 2, "q", app=app).tasks[2]
    mixed.kwargs["body"] = foreign
    assert compact(mixed, app).body is foreign
    assert compact(None, app) is None
