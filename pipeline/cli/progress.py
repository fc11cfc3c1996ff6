"""The progress bar a waiting ``sweep``/``run``/``wait``/``restart`` draws on stderr.

One bar, one segment a task state: succeeded, failed, blocked (TriggerFailed), cancelled,
retrying and running tasks each have their own character and colour, so a failure shows
in the bar the moment it is recorded, with the counts beside it and an estimate of the
time left only when there is something to base it on (:func:`time_left`). Drawn with
``rich`` (click's bar fills one character whatever happened, and knows one count); only
on a terminal, never with ``--json``.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import redis

from pipeline.ledger.status import format_seconds
from pipeline.ledger.values import TaskState

SEGMENTS = (
    (TaskState.SUCCESS, "=", "green"),
    (TaskState.CACHED, "+", "green"),
    (TaskState.FAILED, "!", "bold red"),
    (TaskState.TRIGGER_FAILED, "/", "red"),
    (TaskState.CANCELLED, "x", "bright_black"),
    (TaskState.RETRYING, "~", "magenta"),
    (TaskState.RUNNING, ">", "cyan"),
)
"""Task states drawn in the bar, in order: state, character, colour. Pending: blank."""

COUNTED = ((TaskState.SUCCESS, "done"), (TaskState.CACHED, "cached"), (TaskState.FAILED, "failed"), (TaskState.TRIGGER_FAILED, "blocked"),
           (TaskState.CANCELLED, "cancelled"), (TaskState.RETRYING, "retrying"), (TaskState.RUNNING, "running"))
"""States counted beside the bar, with their word (zero counts other than ``done`` are left out)."""

COUNTS_EVERY = 0.5
"""Seconds between two reads of the task states while the number of finished tasks stands still."""

COUNTS_AT_MOST_EVERY = 0.25
"""Seconds between two reads of the task states however fast tasks finish (one read of a
2000-alpha run's 6005 states took 12 ms); the read that sees the run finished is never skipped."""

BAR_WIDTH = 24
"""Columns of the bar itself."""

MIN_FINISHED_FOR_ESTIMATE = 3
"""Finished tasks needed before an estimate of the time left is shown."""


def segments(counts: dict[str, int], total: int, width: int = BAR_WIDTH) -> list[tuple[str, str, int]]:
    """The bar as ``(character, colour, columns)`` runs: each state's share of ``width``
    columns by cumulative rounding (so the runs add up to at most ``width``, and a state
    with one task in a thousand may get none), pending tasks left blank."""
    runs, before, drawn = [], 0, 0
    for state, char, colour in SEGMENTS:
        before += counts.get(state, 0)
        upto = round(before / total * width) if total else 0
        if upto > drawn:
            runs.append((char, colour, upto - drawn))
            drawn = upto
    return runs


def bar_text(counts: dict[str, int], total: int, width: int = BAR_WIDTH) -> str:
    """The bar without colour: ``[====!!//>>      ]``."""
    body = "".join(char * n for char, _colour, n in segments(counts, total, width))
    return f"[{body:<{width}}]"


def counts_text(counts: dict[str, int], finished: int, total: int) -> str:
    """``12/23  9 done, 2 failed, 1 blocked, 1 retrying``."""
    words = [f"{counts.get(state, 0)} {word}" for state, word in COUNTED
             if counts.get(state, 0) or state == TaskState.SUCCESS]
    return f"{finished}/{total}  " + ", ".join(words)


def time_left(finished_since: int, watched: float, left_to_finish: int, counts: dict[str, int]) -> float | None:
    """Seconds left if the run goes on finishing tasks at the pace seen while watching it
    (``finished_since`` tasks in ``watched`` seconds; ``left_to_finish`` to go), or None when
    that says nothing: fewer than :data:`MIN_FINISHED_FOR_ESTIMATE` tasks finished while
    watched, a task is waiting for a retry (its delay is not a pace), or nothing is left.

    Honest about what it is: a run's stages differ in length (cleanups are quick), so it
    is an extrapolation of the pace, shown as ``~``, never a promise; tasks finished before
    the wait began (``wait`` on an older run, a restart) do not count as pace.
    """
    if finished_since < MIN_FINISHED_FOR_ESTIMATE or left_to_finish <= 0 or counts.get(TaskState.RETRYING):
        return None
    return watched / finished_since * left_to_finish


@dataclass
class _Snapshot:
    finished: int = -1
    counts: dict[str, int] = field(default_factory=dict)
    read_at: float = 0.0
    first: tuple[int, float] | None = None
    """Finished tasks and the time when the wait first read the run (the pace's origin)."""


@contextmanager
def progress_bar(ledger, run_id: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A live bar on stderr for ``run_id``; yields ``update(finished, total)`` for
    :func:`pipeline.runs.submit.wait_for_run`, which calls it after every read of the run.

    The task states are read from ``ledger`` when the number of finished tasks changes (at
    most every :data:`COUNTS_AT_MOST_EVERY` seconds, and always once all have finished), and
    every :data:`COUNTS_EVERY` seconds in between (retries and starts finish nothing).
    Disabled: nothing is drawn and nothing read.
    """
    if not enabled:
        yield lambda finished, total: None
        return
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn
    from rich.text import Text

    console = Console(stderr=True)

    class Line(ProgressColumn):
        """Bar, elapsed time, estimate, counts: one line, cut to the terminal's width at its
        end (the counts: running first, then retrying) rather than wrapped."""

        def render(self, task) -> Text:
            text = Text("[")
            drawn = 0
            for char, colour, n in segments(task.fields.get("counts", {}), int(task.total or 0)):
                text.append(char * n, style=colour)
                drawn += n
            text.append(" " * (BAR_WIDTH - drawn) + "] ")
            text.append(format_seconds(task.elapsed or 0.0), style="yellow")
            text.append("".join(f" {part}" for part in (task.fields["eta"], task.fields["counts_text"]) if part))
            text.truncate(max(BAR_WIDTH + 2, console.width - 1), overflow="ellipsis")
            return text

    seen = _Snapshot()
    with Progress(Line(), console=console, refresh_per_second=4) as bar:
        task = bar.add_task(run_id, total=None, counts={}, counts_text="", eta="")

        def update(finished: int, total: int) -> None:
            now = time.monotonic()
            changed = finished != seen.finished
            due = now - seen.read_at >= (COUNTS_AT_MOST_EVERY if changed else COUNTS_EVERY)
            if not due and not (changed and finished >= total):
                return
            seen.finished, seen.read_at = finished, now
            seen.first = seen.first or (finished, now)
            try:
                seen.counts = ledger.state_counts(run_id)
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # the wait notices the outage at its next read and says so; keep the last counts
            left = time_left(finished - seen.first[0], now - seen.first[1], total - finished, seen.counts)
            bar.update(task, total=total, completed=finished, counts=seen.counts,
                       counts_text=counts_text(seen.counts, finished, total),
                       eta="" if left is None else f"~{format_seconds(left)} left")

        yield update
