"""Reading a run's log: every line its stages printed, tagged with task key and time.

The lines are written by the tasks (:mod:`pipeline.worker.logcapture` -> :meth:`Ledger.append_log`)
into one Redis stream per run; this module pages through it, or follows it until the run
has finished and every line is out.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from pipeline.ledger.records import Ledger
from pipeline.ledger.values import FINISHED_RUN_STATES, iso
from pipeline.ledger.status import is_stuck

PAGE = 1000
"""Log records fetched per round trip."""

FOLLOW_BLOCK_MS = 500
"""How long one blocking read waits for new lines before checking the run's state again."""

LogLine = dict[str, Any]

STUCK = "stuck"
"""What :func:`follow` returns for a run that stopped making progress (not a stored state)."""


def log_line(fields: dict[str, str]) -> LogLine:
    """One stored record as ``{"time": ISO, "task": key, "line": text}``."""
    return {"time": iso(fields.get("t")), "task": fields.get("task"), "line": fields.get("line", "")}


def format_line(line: LogLine) -> str:
    """``<ISO time> <task key> <line>``."""
    return f"{line['time']} {line['task']} {line['line']}"


def read_all(ledger: Ledger, run_id: str, task: str | None = None) -> Iterator[LogLine]:
    """Every stored line of ``run_id`` (only task ``task``'s if given), oldest first."""
    after = "-"
    while True:
        records = ledger.read_logs(run_id, after=after, count=PAGE)
        for record_id, fields in records:
            if task is None or fields.get("task") == task:
                yield log_line(fields)
        if len(records) < PAGE:
            return
        after = records[-1][0]


def follow(
    ledger: Ledger,
    run_id: str,
    emit: Callable[[LogLine], None],
    task: str | None = None,
    block_ms: int = FOLLOW_BLOCK_MS,
    stuck_after: float | None = None,
) -> str | None:
    """Emit the run's lines as they arrive until it has finished and all are out.

    Returns the run's state when it stopped: an end state, :data:`STUCK` when
    ``stuck_after`` is given and the run is stuck (:func:`pipeline.ledger.status.is_stuck`), or
    None if its record vanished (expired, pruned). Tasks store their lines before they
    record their end, so once the run reads finished, one more read that finds nothing
    new means nothing is left to come.
    """
    after = "0-0"
    while True:
        run = ledger.get_run(run_id)
        state = run.get("state") if run else None
        if run is not None and stuck_after is not None and is_stuck(run, stuck_after):
            state = STUCK
        done = state is None or state == STUCK or state in FINISHED_RUN_STATES
        while True:
            records = ledger.wait_logs(run_id, after, block_ms=0 if done else block_ms, count=PAGE)
            for record_id, fields in records:
                after = record_id
                if task is None or fields.get("task") == task:
                    emit(log_line(fields))
            if len(records) < PAGE:
                break
        if done:
            return state
