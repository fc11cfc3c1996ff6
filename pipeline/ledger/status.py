"""What a run looks like from the outside: its summary, its tasks, whether it is stuck.

Pure functions over ledger records (the dicts :meth:`Ledger.get_run` and
:meth:`Ledger.tasks` return): the ``runs`` and ``status`` commands print what these
build, and any later command that needs the stuck rule (restart) calls :func:`is_stuck`.
"""
from __future__ import annotations

import time
from typing import Any

from pipeline.artifacts.store import run_location
from pipeline.definition import flow
from pipeline.definition.naming import alpha_name
from pipeline.ledger.values import ACTIVE_RUN_STATES, TaskState, iso


def _float(value: Any) -> float | None:
    if value in (None, ""):
        return None
    return float(value)


def n_branches(run: dict[str, Any]) -> int:
    """How many alphas (branches) the run has, from its parameters."""
    return len(run_alphas(run))


def stuck_threshold(run: dict[str, Any], stuck_after: float) -> float:
    """Seconds without progress after which ``run`` counts as stuck.

    ``stuck_after`` (``PIPELINE_STUCK_AFTER``) plus the waits the run itself asked for
    (``--sleep`` inside a stage, ``--retry-delay`` between attempts): a run told to sleep
    ten minutes in a stage is not stuck after five.
    """
    params = run.get("params") or {}
    if not isinstance(params, dict):
        params = {}
    return stuck_after + float(params.get("sleep") or 0) + float(params.get("retry_delay") or 0)


def is_stuck(run: dict[str, Any], stuck_after: float, now: float | None = None) -> bool:
    """True when ``run`` is Pending/Running and has made no progress for too long.

    Progress is the record's ``updated`` time, which every task transition sets; a run
    whose tasks can no longer finish (a lost chord counter, a lost message) stops
    updating it. The limit is :func:`stuck_threshold`.
    """
    if run.get("state") not in ACTIVE_RUN_STATES:
        return False
    updated = _float(run.get("updated")) or _float(run.get("created"))
    if updated is None:
        return False
    now = time.time() if now is None else now
    return now - updated > stuck_threshold(run, stuck_after)


def duration(started: Any, ended: Any, now: float | None = None) -> float | None:
    """Seconds from ``started`` to ``ended`` (to ``now`` while not ended); None if not started."""
    start = _float(started)
    if start is None:
        return None
    end = _float(ended)
    if end is None:
        end = time.time() if now is None else now
    return round(max(0.0, end - start), 3)


def format_seconds(seconds: float | None) -> str:
    """A duration for tables: ``0.42s``, ``12.3s``, ``4m05s``, ``2h03m``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def task_duration(row: dict[str, Any], now: float | None = None) -> float | None:
    """Seconds of a task's last attempt: to its end, or to ``now`` while it runs."""
    if row["ended"] is not None or row["state"] == TaskState.RUNNING:
        return duration(row["started"], row["ended"], now)
    return None


def run_summary(run: dict[str, Any], stuck_after: float, now: float | None = None) -> dict[str, Any]:
    """One run as ``runs --json`` shows it (times ISO-8601 UTC, duration in seconds)."""
    ntasks = int(run.get("ntasks") or 0)
    return {
        "run_id": run.get("id"),
        "flow": run.get("flow"),
        "version": int(run["version"]) if run.get("version") else None,
        "state": run.get("state"),
        "stuck": is_stuck(run, stuck_after, now),
        "label": run.get("label") or None,
        "created": iso(run.get("created")),
        "started": iso(run.get("started")),
        "ended": iso(run.get("ended")),
        "updated": iso(run.get("updated")),
        "duration": duration(run.get("started"), run.get("ended"), now),
        "tasks_done": ntasks - int(run.get("remaining") or 0),
        "tasks_total": ntasks,
    }


def branch_alpha(key: str, alphas: list) -> str | None:
    """The alpha (as in results: ``str(float(alpha))``) of a branch task ``train_model[i]`` or
    ``evaluate_model[i]``; None for the other tasks and for keys not of this run."""
    try:
        stage, index = flow.parse_key(key, len(alphas))
    except ValueError:
        return None
    return alpha_name(alphas[index]) if stage in (flow.TRAIN, flow.EVALUATE) else None


def last_line(text: str | None) -> str | None:
    """The last non-blank line of an error (a traceback's is the exception), or None."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def failure_summary(rows: list[dict[str, Any]], alphas: list) -> dict[str, Any]:
    """What went wrong in a run, from its task rows: ``failed`` (each Failed task's ``key``,
    ``alpha`` and the last line of its ``error``, in flow order), ``blocked`` (how many
    tasks are TriggerFailed: they never ran because an upstream task failed) and
    ``cancelled`` (how many tasks ``cancel`` stopped).

    The one place this is decided: ``status --json``, ``sweep``/``wait`` (text and
    ``--json``) and the web pages all show what this returns.
    """
    failed = [{"key": row["key"], "alpha": branch_alpha(row["key"], alphas), "error": last_line(row.get("error"))}
              for row in rows if row["state"] == TaskState.FAILED]
    return {
        "failed": failed,
        "blocked": sum(1 for row in rows if row["state"] == TaskState.TRIGGER_FAILED),
        "cancelled": sum(1 for row in rows if row["state"] == TaskState.CANCELLED),
    }


def run_alphas(run: dict[str, Any]) -> list:
    """The run's alphas from its parameters (``[None]``: the linear run; ``[]`` if unknown)."""
    params = run.get("params")
    return list(params.get("alphas") or []) if isinstance(params, dict) else []


def task_document(row: dict[str, Any], now: float | None = None, alphas: list | None = None) -> dict[str, Any]:
    """One task row of :meth:`Ledger.tasks` as ``status --json`` shows it (``alpha``: see
    :func:`branch_alpha`; ``alphas`` are the run's)."""
    return {
        "key": row["key"],
        "alpha": branch_alpha(row["key"], alphas or []),
        "state": row["state"],
        "attempts": row["attempts"],
        "started": iso(row["started"]),
        "ended": iso(row["ended"]),
        "duration": task_duration(row, now),
        "output": row.get("output"),
        "error": row.get("error") or None,
        "cached_from": row.get("cached_from"),
        "earlier_attempts": [
            {"attempt": a["attempt"], "state": a["state"], "started": iso(a["started"]), "ended": iso(a["ended"]),
             "duration": None if a["ended"] is None else duration(a["started"], a["ended"]), "error": a["error"]}
            for a in row.get("history", [])
        ],
    }


def status_document(run: dict[str, Any], rows: list[dict[str, Any]], stuck_after: float,
                    now: float | None = None) -> dict[str, Any]:
    """The object ``status --json`` prints: the run's summary, parameters, every task, and
    what went wrong (:func:`failure_summary`)."""
    doc = run_summary(run, stuck_after, now)
    root = run.get("artifacts")
    alphas = run_alphas(run)
    doc.update(
        {
            "params": run.get("params"),
            "queue": run.get("queue") or None,
            "scheduled_start": iso(run.get("scheduled_start")),
            "artifacts": run_location(root, run["id"]) if root else None,
            "tasks": [task_document(row, now, alphas) for row in rows],
            **failure_summary(rows, alphas),
        }
    )
    return doc
