"""Text views of runs for a terminal: the runs table, a run's task table and its timeline.

They take the JSON documents :mod:`pipeline.ledger.status` builds (ISO times, durations in
seconds), so the text and ``--json`` outputs cannot disagree.
"""
from __future__ import annotations

import shutil
from datetime import datetime
from typing import Any, Sequence

from pipeline.ledger.status import format_seconds
from pipeline.ledger.values import RunState, TaskState

BAR_CHARS = {TaskState.SUCCESS: "=", TaskState.CACHED: "+", TaskState.FAILED: "!", TaskState.RUNNING: ">", TaskState.RETRYING: "~",
             TaskState.CANCELLED: "x", TaskState.UNFINISHED: "?"}
"""Character a task's bar is drawn with, by state (anything else: ``#``); ``Unfinished``: an
earlier attempt that recorded no end (its process died), drawn up to the next attempt."""

MAX_BAR_WIDTH = 60
"""Columns of the timeline's bars on a wide terminal."""

MIN_BAR_WIDTH = 20
"""Columns of the timeline's bars however narrow the terminal."""


def _seconds(iso_time: str | None) -> float | None:
    if not iso_time:
        return None
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


def table(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, with a rule under the header."""
    cells = [[str(c) for c in header]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def state_text(doc: dict[str, Any]) -> str:
    """A run's state, with ``(stuck)`` when the stuck flag is set."""
    return f"{doc['state']} (stuck)" if doc.get("stuck") else str(doc["state"])


def runs_table(docs: list[dict[str, Any]]) -> str:
    """The ``runs`` table: one line a run, newest first (as given)."""
    if not docs:
        return "no runs recorded"
    rows = [
        (d["run_id"], f"v{d['version']}" if d["version"] else None, state_text(d),
         format_seconds(d["duration"]), f"{d['tasks_done']}/{d['tasks_total']}", d["label"], d["created"])
        for d in docs
    ]
    return table(("run", "version", "state", "duration", "tasks", "label", "created"), rows)


def timeline(tasks: list[dict[str, Any]], start: float, end: float, width: int) -> list[str]:
    """One Gantt row a task: ``width`` columns spanning ``start``..``end`` (unix seconds).

    Each attempt is drawn from its start to its end with the character of its state:
    earlier attempts first (one that recorded no end reaches to the next attempt's start),
    then the current one (to ``end`` while it runs). A task that never started has an
    empty row.
    """
    span = max(end - start, 1e-6)
    key_width = max(len(t["key"]) for t in tasks)
    lines = []
    for task in tasks:
        bar = [" "] * width
        attempts = [*task.get("earlier_attempts", []), task]
        for attempt, following in zip(attempts, [*attempts[1:], None]):
            t0 = _seconds(attempt["started"])
            if t0 is None:
                continue
            t1 = _seconds(attempt["ended"]) or (following and _seconds(following["started"])) or end
            first = min(width - 1, max(0, int((t0 - start) / span * width)))
            last = min(width, max(first + 1, round((t1 - start) / span * width)))
            bar[first:last] = BAR_CHARS.get(attempt["state"], "#") * (last - first)
        lines.append(f"{task['key']:<{key_width}} |{''.join(bar)}|")
    return lines


def bar_width(key_width: int, columns: int | None = None) -> int:
    """Bar columns for the terminal: at most 60, at least 20."""
    columns = columns or shutil.get_terminal_size((80, 24)).columns
    return max(MIN_BAR_WIDTH, min(MAX_BAR_WIDTH, columns - key_width - 3))


def score_text(task: dict[str, Any]) -> str | None:
    """An evaluation's R^2 for a table (:func:`~pipeline.cli.report.format_score`); None for other tasks."""
    from pipeline.cli.report import format_score

    output = task.get("output")
    score = output.get("score") if isinstance(output, dict) else None
    return None if score is None else format_score(score)


def task_state_text(task: dict[str, Any]) -> str:
    """A task's state for the table; a Cached one names the run its entry came from."""
    source = task.get("cached_from")
    return f"{task['state']} (from {source['run_id']})" if source else str(task["state"])


def status_text(doc: dict[str, Any], now: float, columns: int | None = None) -> str:
    """What ``status RUN_ID`` prints: the run, its task table and its timeline."""
    version = f"v{doc['version']}" if doc["version"] else "v?"
    lines = [
        f"run {doc['run_id']}  {doc['flow']} {version}  {state_text(doc)}",
        f"label {doc['label'] or '-'}  created {doc['created']}  started {doc['started'] or '-'}  "
        f"ended {doc['ended'] or '-'}  duration {format_seconds(doc['duration'])}",
        f"artifacts {doc['artifacts']}",
        "",
    ]
    tasks = doc["tasks"]
    header = ("task", "alpha", "state", "attempts", "duration", "R^2")
    rows = [(t["key"], t.get("alpha"), task_state_text(t), t["attempts"], format_seconds(t["duration"]), score_text(t))
            for t in tasks]
    if any(t["error"] for t in tasks):
        header += ("error",)
        rows = [row + (t["error"] or "",) for row, t in zip(rows, tasks)]
    lines.append(table(header, rows))
    begin = _seconds(doc["started"])
    if begin is not None and tasks:
        finish = _seconds(doc["ended"]) or max([now] + [_seconds(t["ended"]) or 0 for t in tasks])
        key_width = max(len(t["key"]) for t in tasks)
        width = bar_width(key_width, columns)
        scale = f"0s{format_seconds(finish - begin):>{width - 2}}"
        lines += ["", "timeline (from the run's start)", f"{'':<{key_width}}  {scale}"]
        lines += timeline(tasks, begin, finish, width)
        lines.append(f"{'':<{key_width}}  " + "  ".join(f"{c} {s}" for s, c in BAR_CHARS.items()))
    return "\n".join(lines + next_steps(doc))


def next_steps(doc: dict[str, Any]) -> list[str]:
    """After a failed or cancelled run's status: what failed, and the commands to look and resume."""
    if doc["state"] not in (RunState.FAILED, RunState.CANCELLED) and not doc.get("stuck"):
        return []
    run_id, failed = doc["run_id"], doc.get("failed") or []
    counts = [f"{len(failed)} failed", f"{doc.get('blocked', 0)} blocked (TriggerFailed)",
              f"{doc.get('cancelled', 0)} cancelled"]
    lines = ["", f"{doc['state'] if not doc.get('stuck') else 'stuck'}: " + ", ".join(counts)]
    if failed:
        lines.append(f"its output and traceback: python cli.py logs {run_id} --task '{failed[0]['key']}'")
    lines.append(f"run what did not succeed again: python cli.py restart {run_id}")
    return lines


def flows_table(versions: list[dict[str, Any]]) -> str:
    """The ``flows`` table: version, first seen, runs, digest, live workers running it;
    ``*`` marks this code's version."""
    if not versions:
        return "no flow versions recorded yet"
    rows = [(f"{'v' + str(v['version']) if v['version'] else '?'}{' *' if v['current'] else ''}", v["first_seen"],
             v["runs"], v["digest"][:12], " ".join(v.get("workers", [])) or "-")
            for v in versions]
    return table(("version", "first seen", "runs", "digest", "live workers"), rows)
