"""The schedule, and nothing else: one run of the sweep every minute (``*/1``), like the tutorial's
``CronSchedule('*/1 * * * *')``.

The app's configuration holds :func:`build_schedule` and the tick scheduler
(``pipeline.schedule.scheduler:TickScheduler``, which adds each send's tick; see
:func:`pipeline.schedule.beat.beat_config`), so ``python cli.py beat`` and ``celery -A
pipeline beat`` run the same beat. The
``expires`` option (seconds after the tick, ``PIPELINE_BEAT_CATCHUP``, 15 minutes) is the
catch-up window: a restarted beat sends the ticks it missed within it, and a beat message
older than it is dropped; the run's own tasks never expire. ``PIPELINE_BEAT_INTERVAL`` (seconds) replaces the
crontab by an interval on the same kind of grid, for tests; ``PIPELINE_SCHEDULE_LABEL``
routes scheduled runs (and beat's messages) to a label's queue.
"""
from __future__ import annotations

from celery.schedules import crontab

from pipeline.schedule.every import every
from pipeline.schedule.ticks import SCHEDULED_TASK
from pipeline.definition.naming import DEFAULT_N_SAMPLES
from pipeline.settings import DEFAULT_QUEUE, TUTORIAL_ALPHAS, Settings, get_settings

ENTRY_NAME = "sweep-every-minute"
"""Name of the schedule's one entry (beat's state file is keyed by it)."""

SCHEDULED_ALPHAS = [float(alpha) for alpha in TUTORIAL_ALPHAS]
"""Alphas of every scheduled run (the tutorial's ``alphas`` default); backfill's default too."""

SCHEDULED_N_SAMPLES = DEFAULT_N_SAMPLES
"""Dataset rows of every scheduled run."""



def build_schedule(settings: Settings | None = None) -> dict:
    """Celery's ``beat_schedule`` for ``settings``: the ``*/1`` entry (or the test interval)."""
    settings = settings or get_settings()
    interval = settings.beat_interval
    label = settings.schedule_label
    return {
        ENTRY_NAME: {
            "task": SCHEDULED_TASK,
            "schedule": every(interval) if interval > 0 else crontab(minute="*/1"),
            "kwargs": {
                "alphas": SCHEDULED_ALPHAS,
                "n_samples": SCHEDULED_N_SAMPLES,
                "label": label,
                "step": interval if interval > 0 else 60,
            },
            # the catch-up window: missed ticks within it are sent, a message older than it dropped
            "options": {"expires": settings.beat_catchup, "queue": label or DEFAULT_QUEUE},
        }
    }
