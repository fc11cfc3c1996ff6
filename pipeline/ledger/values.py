"""Plain values of the run ledger: state names, its time format, what beginning a task
returns, and the decoding of stored fields. No Redis here (see :mod:`pipeline.ledger.records`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

class TaskState(StrEnum):
    """The state of one task of a run, as stored in Redis and printed (the value is the text)."""

    PENDING = "Pending"
    RUNNING = "Running"
    RETRYING = "Retrying"
    SUCCESS = "Success"
    CACHED = "Cached"
    """Served from the cache (``--cache``): counts as Success downstream, for restart and for the run."""
    FAILED = "Failed"
    TRIGGER_FAILED = "TriggerFailed"
    CANCELLED = "Cancelled"
    """Stopped by ``cancel`` before it ended; a restart runs it again."""
    UNFINISHED = "Unfinished"
    """Only in a task's history: an earlier attempt that recorded no end (its process died)."""


class RunState(StrEnum):
    """The state of a run, as stored in Redis and printed (the value is the text)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


RUN_STATES = tuple(RunState)
"""Every state a run can be in."""

FINISHED_RUN_STATES = frozenset({RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED})
"""Run states after which nothing runs until a restart."""

SUCCEEDED_TASK_STATES = frozenset({TaskState.SUCCESS, TaskState.CACHED})
"""Task states that count as success: for downstream tasks, restart and the run's state."""

ACTIVE_RUN_STATES = frozenset({RunState.PENDING, RunState.RUNNING})
"""Run states in which something is still expected to happen."""


def iso(ts: float | str | None) -> str | None:
    """A stored unix time as ISO-8601 UTC with ``Z`` (None stays None)."""
    if ts in (None, ""):
        return None
    moment = datetime.fromtimestamp(float(ts), tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Begin:
    """What :meth:`Ledger.begin_task` decided: run the body, or why not."""

    verdict: str  # "run", "success", "cancelled", "terminal", "missing", "stale" or "version"
    attempts: int = 0


class SupersededAttempt(Exception):
    """A task's attempt whose result the ledger refused: the task began again since (its
    worker was declared dead and a live worker took the message over), so this late
    attempt must change nothing, send nothing on and not retry."""


def earlier_attempt(entry: dict[str, Any]) -> dict[str, Any]:
    """One stored earlier attempt with unix times as floats (None where it recorded no end)."""
    ended = entry.get("ended")
    return {"attempt": int(entry.get("attempt", 0)), "state": entry.get("state"),
            "started": float(entry["started"]), "ended": float(ended) if ended else None,
            "error": entry.get("error")}


def with_params(run: dict[str, Any]) -> dict[str, Any]:
    """``run`` (a run hash as Redis returns it) with its ``params`` JSON decoded, as
    :meth:`Ledger.get_run` gives it (a run already decoded is returned as it is)."""
    if isinstance(run.get("params"), str):
        run = {**run, "params": json.loads(run["params"])}
    return run


def encode_field(value: Any) -> str:
    """A run field as stored: JSON for containers, ``""`` for None, else ``str``."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if value is None:
        return ""
    return str(value)


@dataclass(frozen=True)
class BeginRead:
    """What :meth:`Ledger.begin_read` returns."""

    begin: Begin
    created: str
    """The run's ``created`` field (identifies this incarnation of the run id)."""
    artifacts: str
    params: dict | None
    """The run's parameters; None when the caller said it already had them."""
    outputs: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict] = field(default_factory=dict)
    """Task key -> ``{file name: {size, sha256}}`` of the files it wrote (of the keys read)."""
