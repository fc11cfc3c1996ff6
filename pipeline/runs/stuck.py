"""Why a waited-on run will not finish by itself: stuck (and why), or its record lost.

``sweep``, ``run``, ``wait`` and ``restart`` wait on the run record
(:func:`pipeline.runs.submit.wait_for_run`). A run whose tasks can no longer progress
(no worker consumes its queue, a lost message or chord counter) would keep them waiting
forever; these say so instead, with the same rule ``status`` and ``runs`` flag a run
stuck by (:func:`pipeline.ledger.status.is_stuck`), and name the likely cause.
"""
from __future__ import annotations

import time
from typing import Any

from pipeline.ledger.records import Ledger
from pipeline.ledger.status import is_stuck, stuck_threshold
from pipeline.settings import DEFAULT_QUEUE


class RunStuck(Exception):
    """The run is flagged stuck; ``reason`` says why in a few words."""

    def __init__(self, run_id: str, reason: str) -> None:
        super().__init__(f"run {run_id} is stuck: {reason}")
        self.run_id = run_id
        self.reason = reason


class RunLost(Exception):
    """The run's record is gone from Redis while it was being waited on."""

    def __init__(self, run_id: str) -> None:
        super().__init__(lost_record_message(run_id))
        self.run_id = run_id


def lost_record_message(run_id: str, directory: str | None = None) -> str:
    """One line saying ``run_id``'s record is gone from Redis, and the likely cause."""
    files = f" (its files are still in {directory})" if directory else ""
    return (f"run {run_id} is no longer recorded in Redis{files}: Redis lost its data "
            "(restarted without persistence, or flushed); see docs/reliability.md")


def stuck_reason(ledger: Ledger, run: dict[str, Any], stuck_after: float, now: float | None = None) -> str | None:
    """Why ``run`` is stuck, or None while it is not (the rule of :func:`is_stuck`).

    No live worker consumes the run's queue (the run waits for one), or none of those runs
    the run's flow version (its tasks wait for one), else the run made no progress for
    longer than its threshold though some worker consumes the queue.
    """
    from pipeline.worker.liveness import consumers_of

    now = time.time() if now is None else now
    if not is_stuck(run, stuck_after, now):
        return None
    idle = now - float(run.get("updated") or run.get("created"))
    queue = run.get("queue") or DEFAULT_QUEUE
    limit = f"no progress for {idle:.0f} s (limit {stuck_threshold(run, stuck_after):g} s, PIPELINE_STUCK_AFTER)"
    if not consumers_of(ledger, queue):
        return f"no live worker consumes its queue {queue!r}; {limit}"
    if run.get("digest") and not consumers_of(ledger, queue, run["digest"]):
        return (f"no live worker of its queue {queue!r} runs its flow version v{run.get('version')} "
                f"(python cli.py flows shows who runs what); {limit}")
    return f"{limit} though a live worker consumes its queue {queue!r} (a lost message or chord counter?)"
