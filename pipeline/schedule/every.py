"""An aligned interval schedule: every S seconds on the grid of multiples of S since the epoch.

``PIPELINE_BEAT_INTERVAL`` uses it instead of the ``*/1`` crontab (for tests). Kept apart
from :mod:`pipeline.schedule.scheduler` so that the app's configuration, which holds the
schedule, does not import ``celery.beat`` into every process (only beat needs it).

Upstream code (Celery 5.7.0; ``tests/test_upstream_pins.py``): ``celery.schedules.schedule``
(``run_every``, ``now``, ``maybe_make_aware``, ``remaining_estimate``, ``is_due``) in
https://github.com/celery/celery/blob/v5.7.0/celery/schedules.py
"""
from __future__ import annotations

from datetime import datetime, timedelta

from celery.schedules import schedstate, schedule

from pipeline.schedule.ticks import floor_tick


class every(schedule):  # noqa: N801 (named like celery's own ``crontab`` / ``schedule``)
    """Every ``seconds`` seconds on the grid of multiples of ``seconds`` since the epoch (UTC).

    Like a crontab for seconds: unlike Celery's plain interval schedule, due times do not
    drift with beat's latency, so every tick has its own grid point.
    """

    def __init__(self, seconds: float, nowfun=None, app=None) -> None:
        if seconds <= 0:
            raise ValueError(f"interval {seconds} must be positive")
        super().__init__(run_every=timedelta(seconds=seconds), nowfun=nowfun, app=app)

    @property
    def step(self) -> float:
        """Seconds between ticks."""
        return self.run_every.total_seconds()

    def due_after(self, moment: datetime) -> datetime:
        """The first grid point strictly after ``moment``."""
        return floor_tick(self.maybe_make_aware(moment), self.step) + self.run_every

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        """Time until the first grid point after ``last_run_at`` (negative when overdue)."""
        return self.due_after(last_run_at) - self.now()

    def is_due(self, last_run_at: datetime) -> schedstate:
        """Due when a grid point has passed since ``last_run_at``; next check at the next point."""
        now = self.now()
        remaining = (self.due_after(last_run_at) - now).total_seconds()
        if remaining <= 0:
            return schedstate(True, (self.due_after(now) - now).total_seconds())
        return schedstate(False, remaining)

    def __reduce__(self):
        return self.__class__, (self.step,)

    def __repr__(self) -> str:
        return f"<every {self.step:g}s, aligned>"
