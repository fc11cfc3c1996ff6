"""Schedule ticks: their arithmetic, and the run each one creates (shared by beat and backfill).

A tick is a moment in UTC on the schedule's grid (whole minutes; whole multiples of
``PIPELINE_BEAT_INTERVAL`` seconds when that is set for tests). Tick T creates the run
``tick-YYYYMMDDHHmmss`` with ``RunRequest(tick=T)``: seed ``int(T.timestamp())`` and T in
every file name. The run id derives from T and the record is created first-writer-wins,
so however many times a tick is submitted (two beats, a redelivery, a backfill), it has
one run and one canvas.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.ledger import Ledger
from pipeline.runs import RunRequest, Submitted, ensure_submitted, submit_run, tick_run_id
from pipeline.stages import DEFAULT_N_SAMPLES
from pipeline.submission import needs_submission
from pipeline.validation import BadInput, check_label, parse_alphas

MINUTE = 60
"""Seconds between ticks of the ``*/1`` crontab."""

MAX_BACKFILL_TICKS = 1440
"""Most ticks one ``backfill`` call creates (a day of minutes)."""

HEAL_LOOKBACK_TICKS = 10
"""Ticks before the current one that a scheduled run checks for a run recorded but never sent."""


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


def iso_tick(moment: datetime) -> str:
    """A tick as ISO-8601 UTC with ``Z``: ``2026-11-28T09:01:00Z``."""
    return utc(moment).isoformat().replace("+00:00", "Z")


def tick_request(tick: datetime, *, alphas: Sequence[float] | Iterable[str], artifacts_root: Path,
                 n_samples: int = DEFAULT_N_SAMPLES, label: str | None = None) -> RunRequest:
    """The run request of tick ``tick`` with the schedule's parameters (validated)."""
    parsed = parse_alphas([",".join(str(a) for a in alphas)])
    if label is not None:
        check_label(label)
    return RunRequest(alphas=parsed, artifacts_root=Path(artifacts_root).resolve(), n_samples=int(n_samples),
                      label=label, tick=utc(tick))


def submit_tick(ledger: Ledger, request: RunRequest) -> Submitted:
    """Create (first writer wins) and send tick ``request.tick``'s run; an existing run is left as is
    unless it was never sent."""
    if request.tick is None:
        raise ValueError("a tick run needs request.tick")
    return submit_run(ledger, request, run_id=tick_run_id(request.tick))


def heal_recent(ledger: Ledger, tick: datetime, step: float = MINUTE,
                lookback: int = HEAL_LOOKBACK_TICKS) -> list[str]:
    """Send the runs of the ``lookback`` ticks before ``tick`` that were recorded but never sent.

    Returns the run ids this call sent. A claim younger than the lease is left alone.
    """
    sent = []
    for i in range(1, lookback + 1):
        run_id = tick_run_id(utc(tick) - timedelta(seconds=step * i))
        if needs_submission(ledger, run_id) and ensure_submitted(ledger, run_id):
            sent.append(run_id)
    return sent
