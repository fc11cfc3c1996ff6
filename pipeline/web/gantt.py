"""The run page's Gantt bars: where each attempt of a task sits on the run's time axis.

Like ``status``'s text timeline (:func:`pipeline.cli.views.timeline`), from the same
``status --json`` document: earlier attempts first (one that recorded no end reaches the
next attempt's start), then the current one (to the run's end, or now, while it runs).
Positions are percentages of the axis, so the bars are plain CSS.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any


def seconds(iso_time: str | None) -> float | None:
    """Unix seconds of an ISO-8601 time from the document (None stays None)."""
    if not iso_time:
        return None
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


def axis(doc: dict[str, Any], now: float) -> tuple[float, float] | None:
    """(start, end) of the run's time axis: its start to its end (or the last task end, or now)."""
    start = seconds(doc.get("started"))
    if start is None:
        return None
    end = seconds(doc.get("ended"))
    if end is None:
        end = max([now] + [seconds(t["ended"]) or 0 for t in doc["tasks"]])
    return start, max(end, start + 1e-3)


def bars(task: dict[str, Any], start: float, end: float) -> list[dict[str, Any]]:
    """One bar an attempt of ``task``: left and width in percent of ``start``..``end``, state, label."""
    span = end - start
    attempts = [*task.get("earlier_attempts", []), task]
    out = []
    for number, (attempt, following) in enumerate(zip(attempts, [*attempts[1:], None]), start=1):
        t0 = seconds(attempt["started"])
        if t0 is None:
            continue
        t1 = seconds(attempt["ended"]) or (following and seconds(following["started"])) or end
        left = min(100.0, max(0.0, (t0 - start) / span * 100))
        width = min(100.0 - left, max(0.4, (t1 - t0) / span * 100))
        state = attempt["state"]
        out.append({"left": round(left, 2), "width": round(width, 2), "state": state,
                    "title": f"attempt {attempt.get('attempt', number)}: {state}, {t1 - t0:.2f} s"})
    return out
