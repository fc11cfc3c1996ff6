"""Everything one run's page shows, read from the run record in one place.

The page and ``GET /api/runs/<run_id>`` share :func:`status_of`, which builds the
document with :func:`pipeline.ledger.status.status_document`, the builder of
``status --json``; the page adds the schematic, results, logs and which actions apply.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from pipeline.definition import flow
from pipeline.ledger import logs as logview
from pipeline.ledger.records import Ledger
from pipeline.ledger.status import ACTIVE_RUN_STATES, is_stuck, n_branches, status_document
from pipeline.web import schematic

LOG_TAIL = 500
"""Log lines a run page shows (the newest); the JSON and ``logs`` give every line."""

FULL_TABLE_UPTO = 200
"""A run with at most this many tasks lists them all; a bigger one lists its notable tasks."""

ROW_CAP = 500
"""Most task rows (and folded schematic children) a page renders unless asked for all."""

QUIET_STATES = schematic.QUIET
"""Task states a big run's page leaves out of its table until asked for every task."""


@dataclass
class RunView:
    """One run's page: the status document and what the page derives from it."""

    doc: dict[str, Any]
    schematic: schematic.Schematic
    alphas: dict[str, str]
    results: dict[str, float]
    logs: list[dict[str, Any]]
    log_total: int
    log_task: str | None
    restart_refusal: str | None
    rows: list[dict[str, Any]]
    hidden_rows: int
    show_all: bool
    axis: tuple[float, float] | None
    notifications: list[dict[str, Any]]
    """The run's notification deliveries (:func:`pipeline.notify.report.delivery_document`)."""

    @property
    def gantt(self) -> dict[str, list[dict[str, Any]]]:
        """Task key -> its attempts' bars on the run's time axis (shown rows only)."""
        from pipeline.web.gantt import bars

        if self.axis is None:
            return {}
        return {row["key"]: bars(row, *self.axis) for row in self.rows}

    @property
    def finished(self) -> bool:
        return self.doc["state"] not in ACTIVE_RUN_STATES

    @property
    def cancellable(self) -> bool:
        return self.doc["state"] in ACTIVE_RUN_STATES


def status_of(ledger: Ledger, run_id: str, stuck_after: float, now: float | None = None) -> dict[str, Any] | None:
    """The ``status --json`` document of ``run_id``, or None when there is no such run."""
    run = ledger.get_run(run_id)
    if run is None:
        return None
    rows = ledger.tasks(run_id, flow.task_keys(n_branches(run)))
    return status_document(run, rows, stuck_after, now)


def check_task(doc: dict[str, Any], task: str | None) -> str | None:
    """``task`` if it is a key of this run (None stays None); ValueError naming it otherwise."""
    if task is not None:
        flow.parse_key(task, len((doc.get("params") or {}).get("alphas") or []))
    return task


def notable(tasks: list[dict[str, Any]], show_all: bool) -> tuple[list[dict[str, Any]], int]:
    """The task rows a page lists, and how many it leaves out: every row of a small run (or
    when ``show_all``), else those not Pending or Success, at most :data:`ROW_CAP`."""
    if show_all or len(tasks) <= FULL_TABLE_UPTO:
        return tasks, 0
    shown = [t for t in tasks if t["state"] not in QUIET_STATES][:ROW_CAP]
    return shown, len(tasks) - len(shown)


def run_view(ledger: Ledger, run_id: str, stuck_after: float, task: str | None = None,
             show_all: bool = False) -> RunView | None:
    """Read everything the page of ``run_id`` shows; None when there is no such run.

    ``show_all``: every task row and every schematic node, however big the run.
    """
    from pipeline.web.gantt import axis

    from pipeline.runs.restart import keys_to_rerun, restart_refusal
    from pipeline.runs.submit import run_results

    now = time.time()
    run = ledger.get_run(run_id)
    if run is None:
        return None
    rows = ledger.tasks(run_id, flow.task_keys(n_branches(run)))
    doc = status_document(run, rows, stuck_after, now)
    check_task(doc, task)
    if task is None:  # the newest lines alone: a 2000-alpha run has 12,000
        records, total = ledger.log_tail(run_id, LOG_TAIL)
        tail = [logview.log_line(fields) for _id, fields in records]
    else:
        tail, total = deque(maxlen=LOG_TAIL), 0
        for line in logview.read_all(ledger, run_id, task=task):
            tail.append(line)
            total += 1
    rows_shown, hidden = notable(doc["tasks"], show_all)
    stuck = is_stuck(run, stuck_after, now)
    keys = keys_to_rerun({row["key"]: row["state"] for row in rows}, n_branches(run), stuck)
    return RunView(
        doc=doc,
        schematic=schematic.build(doc, show_all),
        alphas=schematic.alphas_by_key(doc),
        results=run_results(ledger, run_id),
        logs=list(tail),
        log_total=total,
        log_task=task,
        restart_refusal=restart_refusal(run, keys, stuck),
        rows=rows_shown,
        hidden_rows=hidden,
        show_all=show_all,
        axis=axis(doc, now),
        notifications=run_notifications(ledger, run_id),
    )


def run_notifications(ledger: Ledger, run_id: str) -> list[dict[str, Any]]:
    """The run's deliveries as ``notifications RUN_ID --json`` lists them (secrets redacted)."""
    from pipeline.notify.report import delivery_document

    return [delivery_document(row) for row in ledger.notifications.deliveries(run_id)]
