"""Beat's side of the schedule: a scheduler that tells each send its tick.

Celery beat calls ``apply_async(entry.args, entry.kwargs, **entry.options)`` and never
tells the task which tick it is for. :class:`TickScheduler` (``celery beat -S
pipeline.schedule.scheduler:TickScheduler``) adds it: for the scheduled-run entry it computes the
moment the entry was due (``now + remaining_estimate(last_run_at)``: the crontab's
minute, not the possibly later moment beat got round to it), truncates it to the
schedule's grid, and sends ``tick=<ISO>`` in the kwargs, a task id derived from the
tick, and an absolute ``expires`` of tick + the entry's ``expires`` seconds, so a message
left queued too long is dropped by the worker.

Catch-up (issue 19): a beat restarted after a pause (killed, stopped, its host asleep)
finds its entry due since its last recorded send, which may be minutes old (beat writes
its state file only every few minutes; a ``kill -9`` loses what came since). Celery sends
one message for that, and we used to give it the first missed tick, already expired, so
the current tick got no run. Now every grid point missed since the last send, up to the
current one, is sent, oldest first, as long as it lies within the catch-up window (the
entry's ``expires``, ``PIPELINE_BEAT_CATCHUP``, 15 minutes); older ones are logged and
left to ``backfill``. The newest tick is always sent. Ticks sent twice (the state file
lagging behind) create nothing new: a tick's run is first writer wins.

Upstream code (Celery 5.7.0; ``tests/test_upstream_pins.py``): ``PersistentScheduler``'s
``apply_async(entry, producer=None, advance=True, **kwargs)``, ``reserve`` and
``setup_schedule``, and ``ScheduleEntry`` (iterated as a mapping of its fields) in
https://github.com/celery/celery/blob/v5.7.0/celery/beat.py. Loaded only by name:
``beat_scheduler`` in :func:`pipeline.schedule.beat.beat_config`. The aligned interval
(:class:`every`, for tests) lives in :mod:`pipeline.schedule.every`, which the app's
configuration imports without ``celery.beat``.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

from celery.beat import PersistentScheduler, ScheduleEntry

from pipeline.schedule.every import every
from pipeline.schedule.ticks import MINUTE, SCHEDULED_TASK, floor_tick, iso_tick, tick_run_id

log = logging.getLogger(__name__)

def grid_step(sched) -> float:
    """Seconds between the grid points of ``sched``: its interval, or a minute for a crontab."""
    return sched.step if isinstance(sched, every) else MINUTE


def entry_tick(entry: ScheduleEntry) -> datetime:
    """The tick an entry being sent now is for: its due time, truncated to the grid (UTC)."""
    sched = entry.schedule
    now = sched.now()
    if isinstance(sched, every):
        due = sched.due_after(entry.last_run_at)
    else:  # remaining_estimate reads the clock again: round away that difference (crontab: whole minutes)
        due = now + sched.remaining_estimate(entry.last_run_at)
        due = datetime.fromtimestamp(round(due.timestamp()), tz=timezone.utc)
    return floor_tick(min(due, now), grid_step(sched))


def stamp_options(options: dict, tick: datetime) -> dict:
    """Options of a tick's send: ``expires`` (seconds) made absolute from the tick, task id from it."""
    stamped = dict(options)
    expires = stamped.get("expires")
    if isinstance(expires, (int, float)):
        stamped["expires"] = tick + timedelta(seconds=expires)
    stamped.setdefault("task_id", f"{tick_run_id(tick)}-scheduled")
    return stamped


def catchup_window(entry: ScheduleEntry) -> float:
    """Seconds back a send catches up: the entry's ``expires``, else ``PIPELINE_BEAT_CATCHUP``."""
    expires = entry.options.get("expires")
    if isinstance(expires, (int, float)) and expires > 0:
        return float(expires)
    from pipeline.settings import get_settings

    return get_settings().beat_catchup


def missed_ticks(entry: ScheduleEntry, window: float) -> tuple[list[datetime], int]:
    """The ticks to send now, oldest first, and how many missed ones are older than ``window``.

    From the first grid point due since ``entry.last_run_at`` to the current one (the
    newest is always included, whatever ``window``).
    """
    step = grid_step(entry.schedule)
    now = entry.schedule.now()
    first = entry_tick(entry)
    last = max(first, floor_tick(now, step))
    count = int(round((last - first).total_seconds() / step)) + 1
    oldest = (now - timedelta(seconds=window)).timestamp()
    skip = min(count - 1, max(0, math.ceil((oldest - first.timestamp()) / step - 1e-9)))
    return [first + timedelta(seconds=step * i) for i in range(skip, count)], skip


class TickScheduler(PersistentScheduler):
    """Beat's persistent scheduler, telling ``pipeline.scheduled_run`` which tick it is for."""

    def setup_schedule(self) -> None:
        """Hold the state file's beat lock (one beat per state file), then load the schedule as Celery does."""
        from pipeline.schedule.beat import lock_beat_dir
        from pipeline.validation import BadInput

        try:
            lock_beat_dir(Path(self.schedule_filename).parent)
        except BadInput as exc:
            raise SystemExit(f"error: {exc}") from None  # one line and exit 1, not beat's traceback
        super().setup_schedule()

    def apply_async(self, entry: ScheduleEntry, producer=None, advance: bool = True, **kwargs):
        """Send ``entry``; for the scheduled-run task, one send per missed tick (see the module doc)."""
        if entry.task != SCHEDULED_TASK:
            return super().apply_async(entry, producer, advance, **kwargs)
        window = catchup_window(entry)
        ticks, skipped = missed_ticks(entry, window)  # before reserve(): last_run_at must be the previous send
        if skipped:
            log.warning("beat missed %d tick(s) older than the catch-up window (%g s, PIPELINE_BEAT_CATCHUP), "
                        "from %s: not sent (python cli.py backfill creates them)", skipped, window,
                        iso_tick(ticks[0] - timedelta(seconds=grid_step(entry.schedule) * skipped)))
        if advance:
            self.reserve(entry)
        result = None
        for tick in ticks:
            stamped = entry.__class__(**dict(
                entry,
                kwargs={**entry.kwargs, "tick": tick.isoformat()},
                options=stamp_options(entry.options, tick),
            ))
            late = (datetime.now(timezone.utc) - tick).total_seconds()
            log.info("tick %s: sending %s (%.1f s after the tick)", iso_tick(tick), SCHEDULED_TASK, late)
            result = super().apply_async(stamped, producer, advance=False, **kwargs)
        return result
