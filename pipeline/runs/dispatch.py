"""Sending a canvas so that the run knows the Celery id of every message it expects.

Before a canvas is sent, :func:`freeze_ids` fixes the Celery task id of each of its
signatures (chain, chord and group members included; Celery keeps ids set by ``freeze``
when the canvas is applied). The run record keeps ``task key -> id``; the ledger's
scripts then refuse to let any other message of the same key begin, retry or finish it.
That is what makes a restart safe while leftovers of an earlier canvas (a cancelled run's
running task, a stuck run's message redelivered late) may still arrive, and it gives
``cancel`` the ids to revoke.
"""
from __future__ import annotations

from typing import Iterator

# _chain is private: the class of Celery 5.7.0's chains (tasks in kwargs["tasks"]); chord is
# _chord (header in kwargs["header"], body in kwargs["body"]); members keep an id set in
# options["task_id"] when applied. https://github.com/celery/celery/blob/v5.7.0/celery/canvas.py
# (tests/test_upstream_pins.py)
from celery.canvas import Signature, _chain, chord, group
from kombu.utils.uuid import uuid

from pipeline.ledger.records import Ledger


def _task_signatures(canvas: Signature | list) -> Iterator[Signature]:
    """Every task signature of ``canvas`` (chain, chord and group members included)."""
    if isinstance(canvas, chord):
        yield from _task_signatures(canvas.tasks)
        yield from _task_signatures(canvas.body)
    elif isinstance(canvas, (_chain, group, list, tuple)):
        for member in canvas.tasks if isinstance(canvas, Signature) else canvas:
            yield from _task_signatures(member)
    else:
        yield canvas


def frozen_ids(canvas: Signature) -> dict[str, str]:
    """Task key -> Celery id of every task signature in a frozen ``canvas``."""
    ids: dict[str, str] = {}
    for sig in _task_signatures(canvas):
        task_id = sig.options.get("task_id")
        if not task_id:
            raise ValueError(f"signature {sig!r} has no task id: freeze the canvas first")
        ids[sig.kwargs["key"]] = task_id
    return ids


def freeze_ids(canvas: Signature) -> dict[str, str]:
    """Fix the Celery id of every task signature of ``canvas``; return task key -> id.

    Only the task signatures get ids here (Celery keeps them when it applies the canvas);
    a full ``canvas.freeze()`` would also build every result object, which ``apply_async``
    does again: about 40 % of the time to submit a 200-alpha sweep (bench/RESULTS.md).
    """
    return {sig.kwargs["key"]: sig.options.setdefault("task_id", uuid()) for sig in _task_signatures(canvas)}


def send_recorded(ledger: Ledger, run_id: str, canvas: Signature) -> dict[str, str]:
    """Record the ids of ``canvas`` in the run record, then send it; return the ids."""
    from pipeline.runs.fanout import compact  # imports the Celery app; dispatch stays light

    ids = freeze_ids(canvas)
    ledger.record_task_ids(run_id, ids)
    compact(canvas).apply_async()  # a wide chord's body travels as one fan-out task
    return ids
