"""Send a chord's body as one small task, so a wide sweep's messages stay small.

Celery copies a chord's body into the message of every header task (it travels as the
``chord`` option until the last header task completes). With the body a group of
``n + 3`` cleanup signatures and ``n`` header branches, that is ``O(n^2)`` bytes to encode,
store in Redis and decode: about 400 KB in each of 2000 messages at 2000 alphas.

:func:`compact`, applied just before sending (after any freezing and recording of task
ids), replaces such a body by one immutable ``pipeline.fan_out`` signature carrying the
run id, the queue and the body's task keys as index ranges; when the chord completes,
that task sends the same tasks the group held. :func:`pipeline.definition.canvas.build_canvas`
keeps the contract's shape; only what travels changes. The fan-out task records nothing
in the ledger: the cleanup tasks it sends do.
"""
from __future__ import annotations

from typing import Any

from celery import Celery
# _chain and _chord are private: Celery 5.7.0's canvas classes (chain() builds a _chain; chord
# is _chord), whose ``tasks`` (chain: kwargs["tasks"]; chord: kwargs["header"]) and ``body``
# (kwargs["body"]) we read and rewrite, in
# https://github.com/celery/celery/blob/v5.7.0/celery/canvas.py (tests/test_upstream_pins.py)
from celery.canvas import Signature, _chain, _chord, group

from pipeline.definition import flow
from pipeline.definition.canvas import task_signature
from pipeline.celery_app import app

FAN_OUT_TASK = "pipeline.fan_out"
"""Name of the task that sends a compacted chord body."""

def encode_keys(keys: list[str]) -> list[list[Any]]:
    """Task keys as ``[[stage, start, stop], ...]`` ranges (unindexed keys as ``[key]``), order kept."""
    out: list[list[Any]] = []
    for key in keys:
        split = flow.split_key(key)
        if split is None or split[1] is None:
            out.append([key])
            continue
        stage, index = split
        last = out[-1] if out else None
        if last and len(last) == 3 and last[0] == stage and last[2] == index:
            last[2] = index + 1
        else:
            out.append([stage, index, index + 1])
    return out


def decode_keys(spec: list[list[Any]]) -> list[str]:
    """The task keys :func:`encode_keys` encoded."""
    keys: list[str] = []
    for item in spec:
        if len(item) == 1:
            keys.append(str(item[0]))
        else:
            stage, start, stop = item
            keys += [flow.indexed_key(stage, i) for i in range(int(start), int(stop))]
    return keys


def _plain(sig: Any) -> tuple[str, str, str] | None:
    """``(run_id, key, queue)`` if ``sig`` is a :func:`task_signature` (frozen or not) of
    a pipeline task with no callbacks of its own."""
    if not isinstance(sig, Signature) or isinstance(sig, (_chain, _chord, group)):
        return None
    kwargs, options = sig.kwargs, sig.options
    if not sig.immutable or sig.args or set(kwargs) != {"run_id", "key"} or not sig.task.startswith("pipeline."):
        return None
    if options.get("link") or options.get("link_error") or options.get("chord"):
        return None
    return kwargs["run_id"], kwargs["key"], options.get("queue")


def fan_out_signature(run_id: str, keys: list[str], queue: str, app: Celery | None = None) -> Signature:
    """The small signature standing for the group of ``keys``' tasks."""
    kwargs = {"run_id": run_id, "queue": queue, "keys": encode_keys(keys)}
    return Signature(FAN_OUT_TASK, kwargs=kwargs, immutable=True, queue=queue, app=app)


def compact(canvas: Signature | None, app: Celery | None = None) -> Signature | None:
    """``canvas`` with every chord body that is a group of one run's plain tasks replaced
    by a fan-out signature; anything else is left as it is."""
    if isinstance(canvas, _chain):
        canvas.tasks = [compact(task, app) for task in canvas.tasks]
    elif isinstance(canvas, _chord) and isinstance(canvas.body, group):
        plain = [_plain(sig) for sig in canvas.body.tasks]
        if len(plain) > 1 and all(plain) and len({(p[0], p[2]) for p in plain}) == 1:
            run_id, _, queue = plain[0]
            canvas.kwargs["body"] = fan_out_signature(run_id, [p[1] for p in plain], queue, app)
    return canvas


def recorded_ids(run_id: str, keys: list[str]) -> list[str | None]:
    """The Celery id the run record expects for each of ``keys`` (None where none is recorded).

    The sender records the ids of the frozen canvas before sending it (so stale messages
    can be told apart); the fan-out sends the body's tasks under those ids. Where none is
    recorded, Celery picks a new id.
    """
    from pipeline.worker.tasks import ledger  # the worker's ledger (imported late: tasks imports stages)

    if not keys:
        return []
    return ledger().task_ids_of(run_id, keys)


@app.task(name=FAN_OUT_TASK)
def fan_out(run_id: str, queue: str, keys: list[list[Any]]) -> int:
    """Send the tasks of ``keys`` (a compacted chord body); return how many were sent."""
    names = decode_keys(keys)
    ids = recorded_ids(run_id, names)
    with app.producer_or_acquire() as producer:
        for key, task_id in zip(names, ids):
            task_signature(run_id, key, queue, app).apply_async(producer=producer, task_id=task_id)
    return len(names)
