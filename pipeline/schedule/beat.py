"""Celery beat's configuration and start: the schedule, the tick scheduler, the state file, the lock.

:func:`beat_config` is part of the app's configuration (:mod:`pipeline.celery_app`), so
``python cli.py beat`` and plain ``celery -A pipeline beat`` run the same beat: the
schedule of ``beat_schedule.py``, :class:`~pipeline.schedule.scheduler.TickScheduler`
(which tells each send its tick) and the state file ``celerybeat-schedule`` in
``PIPELINE_STATE_DIR``. A lock file next to it keeps a second beat from sharing (and
corrupting) it; the tick scheduler takes it, and ``python cli.py beat`` takes it first to
refuse in one line. The deployment runs exactly one beat; a second one elsewhere still
creates no duplicate run, because every tick's run is created first-writer-wins and sent once.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from pipeline.settings import Settings
from pipeline.validation import BadInput

SCHEDULER = "pipeline.schedule.scheduler:TickScheduler"
"""Beat's scheduler class (the ``beat_scheduler`` setting; ``-S`` on beat's command line)."""

STATE_FILE = "celerybeat-schedule"
"""Beat's state file name, inside the state directory."""

LOCK_FILE = "beat.lock"
"""The lock file beside the state file, held by the one beat using it."""

_held: dict[Path, IO] = {}
"""Lock files this process holds, by directory."""


def state_file(settings: Settings) -> Path:
    """Where beat keeps its last-run times."""
    return settings.state_dir.resolve() / STATE_FILE


def beat_config(settings: Settings) -> dict:
    """Celery's beat settings for ``settings``: schedule, scheduler class and state file."""
    import beat_schedule  # the card's top-level module; it imports the scheduler (and celery.beat)

    return {
        "beat_schedule": beat_schedule.build_schedule(settings),
        "beat_scheduler": SCHEDULER,
        # write the state file after every send, not every 3 minutes: a killed beat then
        # restarts from its last send and catches up only what it really missed
        "beat_sync_every": 1,

        "beat_schedule_filename": str(state_file(settings)),
    }


def lock_beat_dir(directory: Path) -> IO:
    """Hold ``directory``'s beat lock for this process (again: the same handle); BadInput if another beat holds it."""
    directory = directory.resolve()
    if directory in _held:
        return _held[directory]
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise BadInput(f"another beat already runs with state directory {directory} (run exactly one beat)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _held[directory] = handle
    return handle


def run_beat(settings: Settings, loglevel: str = "INFO") -> None:
    """Run beat in this process, as the app's configuration says, until it is stopped."""
    lock_beat_dir(settings.state_dir)  # refuse before Celery starts (the scheduler takes it again)
    from pipeline.celery_app import app

    app.start(["beat", "--loglevel", loglevel])
