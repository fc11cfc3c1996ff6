"""Starting Celery beat with the project's schedule and tick scheduler.

Beat's own state file (``celerybeat-schedule``) lives in ``PIPELINE_STATE_DIR``; a lock
file next to it keeps a second beat from sharing (and corrupting) it. The deployment
runs exactly one beat; a second one elsewhere still creates no duplicate run, because
every tick's run is created first-writer-wins and sent once.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from pipeline.settings import Settings
from pipeline.validation import BadInput

SCHEDULER = "pipeline.schedule.scheduler:TickScheduler"
"""Beat's scheduler class (``-S``)."""

STATE_FILE = "celerybeat-schedule"
"""Beat's state file name, inside the state directory."""


def state_file(settings: Settings) -> Path:
    """Where beat keeps its last-run times."""
    return settings.state_dir.resolve() / STATE_FILE


def beat_argv(settings: Settings, loglevel: str = "INFO") -> list[str]:
    """Arguments for ``celery beat`` with the tick scheduler and the state file."""
    return ["beat", "-S", SCHEDULER, "-s", str(state_file(settings)), "--loglevel", loglevel]


def lock_state_dir(settings: Settings) -> IO:
    """Hold the state directory's beat lock for this process (BadInput if another beat holds it)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    path = settings.state_dir.resolve() / "beat.lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise BadInput(f"another beat already runs with state directory {settings.state_dir.resolve()} "
                       "(run exactly one beat)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def run_beat(schedule: dict, settings: Settings, loglevel: str = "INFO") -> None:
    """Run beat in this process with ``schedule`` until it is stopped."""
    lock = lock_state_dir(settings)
    from pipeline.celery_app import app

    app.conf.beat_schedule = schedule
    app.conf.beat_scheduler = SCHEDULER
    try:
        app.start(beat_argv(settings, loglevel))
    finally:
        lock.close()
