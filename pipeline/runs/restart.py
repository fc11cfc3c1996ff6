"""Restart: run a run's failed part again, under the same run id, fed from its own record.

A chord cannot be resumed, so a restart builds a new canvas holding only the tasks that
must run again (``canvas.build_canvas(..., only=keys)``); they read the stored outputs of
their upstream tasks from the ledger, and tasks that succeeded do not run, so their
attempts and files stay as they were. The reset of those tasks is one Lua script that
also checks the run did not change since it was read (two restarts at once cannot both
send a canvas), and records the new messages' Celery ids, so leftovers of an earlier
canvas are stale and do nothing. A restart may change the run's ``fail_rate``,
``retries``, ``retry_delay`` and ``cache`` for the tasks it re-runs (:data:`OVERRIDABLE`): the new
values replace the recorded ones in that same script.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

from pipeline.definition import flow
from pipeline.definition.canvas import build_canvas
from pipeline.celery_app import app
from pipeline.runs.dispatch import freeze_ids
from pipeline.ledger.records import Ledger
from pipeline.settings import DEFAULT_QUEUE
from pipeline.ledger.status import is_stuck
from pipeline.ledger.values import ACTIVE_RUN_STATES, SUCCEEDED_TASK_STATES, TaskState


RESTARTABLE_TASK_STATES = (TaskState.FAILED, TaskState.TRIGGER_FAILED, TaskState.CANCELLED)
"""Task states a restart runs again (a stuck run: every state but Success and Cached)."""


OVERRIDABLE = ("fail_rate", "retries", "retry_delay", "cache")
"""Run parameters a restart may change (``restart --fail-rate/--retries/--retry-delay/--refresh-cache``)."""


class RestartRefused(Exception):
    """The run cannot be restarted now; the message says why, in one line."""


@dataclass(frozen=True)
class Restarted:
    """What a restart did: the tasks it sent again and the run's state afterwards."""

    run_id: str
    keys: list[str]
    stuck: bool
    state: str
    overrides: dict[str, Any] | None = None
    """Parameters the restart changed (name -> new value), None if none."""


def keys_to_rerun(states: Mapping[str, str], n_branches: int, stuck: bool, from_key: str | None = None) -> list[str]:
    """Task keys a restart sends again, in flow order: Failed, TriggerFailed and Cancelled
    ones (for a stuck run, every task not Success or Cached), and with ``from_key`` that task and every
    task downstream of it, whatever their states (ValueError if it is not a key of the run)."""
    keys = flow.task_keys(n_branches)
    forced = set()
    if from_key is not None:
        forced = {from_key, *flow.downstream(from_key, n_branches)}
    if stuck:
        return [k for k in keys if k in forced or states.get(k, TaskState.PENDING) not in SUCCEEDED_TASK_STATES]
    return [k for k in keys if k in forced or states.get(k) in RESTARTABLE_TASK_STATES]


def restart_refusal(run: Mapping, keys: list[str], stuck: bool) -> str | None:
    """Why ``run`` cannot be restarted now (one line), or None when it can.

    ``keys``: what :func:`keys_to_rerun` chose; ``stuck``: :func:`is_stuck` of the run.
    The run pages ask this to decide whether to show the Restart button.
    """
    run_id, state = run.get("id"), run.get("state", "")
    if state in ACTIVE_RUN_STATES and not stuck:
        return (f"run {run_id} is {state.lower()}: wait for it (python cli.py wait {run_id}) "
                f"or cancel it (python cli.py cancel {run_id}) before restarting")
    if not keys and not stuck:
        return f"every task of run {run_id} succeeded: nothing to restart"
    return None


def restart_run(ledger: Ledger, run_id: str, stuck_after: float, now: float | None = None,
                from_key: str | None = None, overrides: Mapping[str, Any] | None = None) -> Restarted:
    """Reset the tasks that must run again and send their canvas; raise RestartRefused if not allowed.

    Allowed when a task is Failed, TriggerFailed or Cancelled (the run has ended) or the run is
    stuck; refused while the run is running, or when every task succeeded. ``from_key``
    (``restart --from``) also re-runs that task and everything downstream of it, even if
    they succeeded: the way to rewrite a damaged upstream file. ``overrides`` (names in
    :data:`OVERRIDABLE`, values validated by the caller) replace those parameters in the
    run's record, atomically with the reset, for the tasks that run again.
    """
    unknown = set(overrides or {}) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"a restart cannot change {', '.join(sorted(unknown))}")
    run = ledger.get_run(run_id)
    if run is None:
        raise RestartRefused(f"no run {run_id!r}")
    now = time.time() if now is None else now
    state = run.get("state", "")
    stuck = is_stuck(run, stuck_after, now)
    n_branches = len(run["params"]["alphas"])
    try:
        keys = keys_to_rerun(ledger.task_states(run_id), n_branches, stuck, from_key)
    except ValueError as exc:
        raise RestartRefused(f"--from: {exc} in run {run_id}") from None
    refusal = restart_refusal(run, keys, stuck)
    if refusal:
        raise RestartRefused(refusal)
    canvas = build_canvas(run_id, n_branches, run.get("queue") or DEFAULT_QUEUE, keys, app=app) if keys else None
    ids = freeze_ids(canvas) if canvas is not None else {}
    if set(ids) != set(keys):
        raise RuntimeError(f"canvas of run {run_id} does not hold exactly the tasks to restart")
    params = {**run["params"], **overrides} if overrides else None
    verdict, _remaining, new_state = ledger.reset_tasks(run_id, state, run.get("updated") or "", ids, params)
    if verdict == "missing":
        raise RestartRefused(f"no run {run_id!r}")
    if verdict != "ok":
        raise RestartRefused(f"run {run_id} changed while it was being restarted: try again")
    if canvas is not None:
        canvas.apply_async()
    return Restarted(run_id, keys, stuck, new_state, dict(overrides) if overrides else None)
