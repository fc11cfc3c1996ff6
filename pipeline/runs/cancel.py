"""Cancel: stop a run now, leaving it restartable.

Three layers, each enough on its own for what it covers:

1. The ledger (one Lua script): ``cancelled=1``, every task not yet ended becomes
   Cancelled (so ``restart`` runs it again), and the run ends Cancelled.
   From then on a task message of the run does nothing (``begin_task`` answers
   ``cancelled``, or ``stale`` once a restart has re-sent the task), and whatever a
   still-running body reports at its end is ignored. The old canvas drains or is
   abandoned: a chord whose header tasks were revoked never sends its body, and its
   counter expires with Celery's results.
2. Celery: every message id the run still expected is revoked (queued messages, retries
   waiting for their countdown, and chain links not yet sent are dropped by the workers
   that hear the broadcast).
3. Running tasks: on prefork workers they are terminated (SIGTERM to the pool process).
   A threads pool cannot kill a thread: there the running body ends by itself, and its
   result is discarded.
"""
from __future__ import annotations

from dataclasses import dataclass

from celery import Celery

from pipeline.celery_app import app as default_app
from pipeline.ledger.records import Ledger
from pipeline.ledger.values import TaskState
from pipeline.settings import PREFORK

STATS_TIMEOUT = 1.0
"""Seconds to wait for workers to say which pool they run (only when tasks are running)."""


class CancelRefused(Exception):
    """The run cannot be cancelled (unknown, or already ended); one-line message."""


@dataclass(frozen=True)
class Cancelled:
    """What a cancel stopped: task keys, the Celery ids revoked and those terminated."""

    run_id: str
    stopped: list[str]
    revoked: list[str]
    terminated_on: list[str]


def cancel_run(ledger: Ledger, run_id: str, app: Celery | None = None) -> Cancelled:
    """Cancel ``run_id`` (see the module's docstring); raise CancelRefused if it cannot be."""
    app = app or default_app
    verdict, tasks = ledger.cancel_run(run_id)
    if verdict == "missing":
        raise CancelRefused(f"no run {run_id!r}")
    if verdict != "cancelled":
        state = ledger.get_run(run_id).get("state")
        raise CancelRefused(f"run {run_id} has already ended ({state}): nothing to cancel")
    revoked = [task_id for _key, _state, task_id in tasks if task_id]
    if revoked:
        app.control.revoke(revoked)
    running = [task_id for _key, state, task_id in tasks if task_id and state == TaskState.RUNNING]
    workers = terminate(app, running) if running else []
    return Cancelled(run_id, [key for key, _state, _id in tasks], revoked, workers)


def terminate(app: Celery, task_ids: list[str]) -> list[str]:
    """Terminate ``task_ids`` on the prefork workers (the pools that can); return their names.

    Other pools would answer ``NotImplementedError``, so they are not asked.
    """
    stats = app.control.inspect(timeout=STATS_TIMEOUT).stats() or {}
    prefork = sorted(
        name for name, info in stats.items()
        if PREFORK in str((info.get("pool") or {}).get("implementation", ""))
    )
    if prefork:
        app.control.revoke(task_ids, terminate=True, destination=prefork)
    return prefork
