"""Schedule ticks: the grid of moments a schedule fires at, and spans of them (pure, light).

A tick is a moment in UTC on the schedule's grid: whole minutes, or whole multiples of
``PIPELINE_BEAT_INTERVAL`` seconds when that is set for tests. What a tick creates is in
:mod:`pipeline.schedule.tick_runs`.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from pipeline.definition.naming import tick_stamp
from pipeline.validation import BadInput

MINUTE = 60
"""Seconds between ticks of the ``*/1`` crontab."""

SCHEDULED_TASK = "pipeline.scheduled_run"
"""Name of the task beat sends every tick, which turns the tick into a run."""

MAX_BACKFILL_TICKS = 1440
"""Most ticks one ``backfill`` call creates (a day of minutes)."""


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (a naive one is taken to be UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def floor_tick(moment: datetime, step: float = MINUTE) -> datetime:
    """The grid point at or before ``moment``: multiples of ``step`` seconds since the epoch, UTC."""
    ts = utc(moment).timestamp()
    return datetime.fromtimestamp(math.floor(ts / step + 1e-9) * step, tz=timezone.utc)


def ceil_tick(moment: datetime, step: float = MINUTE) -> datetime:
    """The grid point at or after ``moment``."""
    ts = utc(moment).timestamp()
    return datetime.fromtimestamp(math.ceil(ts / step - 1e-9) * step, tz=timezone.utc)


def parse_time(text: str, name: str) -> datetime:
    """An ISO-8601 time from the command line; without a zone it is UTC (BadInput otherwise)."""
    try:
        return utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise BadInput(f"{name} {text!r} is not an ISO-8601 time such as 2026-11-28T09:00") from None


def ticks_between(start: datetime, end: datetime, now: datetime, *, step: float = MINUTE,
                  limit: int = MAX_BACKFILL_TICKS) -> list[datetime]:
    """Every tick from ``start`` to ``end`` inclusive; BadInput for a reversed, future or too long span."""
    start, end, now = utc(start), utc(end), utc(now)
    if start > end:
        raise BadInput(f"start {iso_tick(start)} is after end {iso_tick(end)}")
    first, last = ceil_tick(start, step), floor_tick(end, step)
    if last > now:
        raise BadInput(f"tick {iso_tick(last)} is in the future (now {iso_tick(now)}): "
                       "backfill only creates past ticks")
    if first > last:
        raise BadInput(f"no tick between {iso_tick(start)} and {iso_tick(end)} (ticks are whole minutes)")
    count = int(round((last - first).total_seconds() / step)) + 1
    if count > limit:
        raise BadInput(f"{count} ticks between {iso_tick(first)} and {iso_tick(last)}: at most {limit} a call")
    return [first + timedelta(seconds=step * i) for i in range(count)]


def tick_run_id(tick: datetime) -> str:
    """The run id of a scheduled tick: ``tick-YYYYMMDDHHmmss``."""
    return f"tick-{tick_stamp(tick)}"


def iso_tick(moment: datetime) -> str:
    """A tick as ISO-8601 UTC with ``Z``: ``2026-11-28T09:01:00Z``."""
    return utc(moment).isoformat().replace("+00:00", "Z")
