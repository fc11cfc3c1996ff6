"""Starting a Celery worker on the queues of one or more labels."""
from __future__ import annotations

import gc
import logging
import os
from typing import Sequence

from celery.signals import worker_init

from pipeline.celery_app import app
from pipeline.settings import DEFAULT_QUEUE

TASK_LINE_LOGGERS = ("celery.worker.strategy", "celery.app.trace")
"""Celery's loggers of the two INFO lines it writes per task ("received", "succeeded in")."""


def quiet_task_lines() -> None:
    """Leave Celery's per-task INFO lines out of the worker's log (warnings and errors stay).

    In a sweep of small tasks they cost about a tenth of the wall time (bench/RESULTS.md);
    ``status``, ``logs`` and Flower show every task anyway. Celery decides once, when it
    builds a task's tracer, whether to write them, so this runs before the worker starts
    (pool processes inherit it).
    """
    for name in TASK_LINE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def freeze_imports_before_forking(**_kwargs: object) -> None:
    """Move every object of the started worker into the collector's permanent generation.

    Celery runs ``gc.collect()`` before each pool process it forks (celery/concurrency/
    asynpool.py, ``_create_worker_process``): with the stages' libraries imported that is a
    full collection of about 0.2 s on this machine, paid again for every process an
    autoscaled pool grows by, while the main process dispatches nothing. Frozen objects are
    not scanned, by that collection or by the children's own (fewer copy-on-write pages).
    """
    gc.freeze()


def worker_argv(labels: Sequence[str], concurrency: int | None, pool: str, loglevel: str = "INFO",
                mingle: bool = True, celery_options: Sequence[str] = ()) -> list[str]:
    """Arguments for ``celery worker``: the labels' queues (default queue without labels).

    ``mingle=False`` skips Celery's start-up sync with other workers, which waits a full
    second for replies: pointless for a worker that is alone (the embedded stack's).
    ``celery_options``: further ``celery worker`` options, passed as they are after ours, so
    one given twice (``-Q``, ``--hostname``) takes the caller's value; Celery checks them.
    """
    queues = list(dict.fromkeys(labels)) or [DEFAULT_QUEUE]
    name = f"{'+'.join(queues)}.{os.getpid()}@%h"
    argv = ["worker", "-Q", ",".join(queues), "-P", pool, "-E", "--loglevel", loglevel, "-n", name]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if not mingle:
        argv.append("--without-mingle")
    return argv + list(celery_options)


def run_worker(labels: Sequence[str], concurrency: int | None, pool: str, loglevel: str = "INFO",
               mingle: bool = True, log_tasks: bool = False, celery_options: Sequence[str] = ()) -> None:
    """Run a worker in this process until it is stopped (``log_tasks``: keep Celery's per-task lines;
    ``celery_options``: see :func:`worker_argv`)."""
    import pipeline.worker.tasks  # noqa: F401  (registers the stage tasks before the worker starts)

    if not log_tasks:
        quiet_task_lines()
    worker_init.connect(freeze_imports_before_forking, weak=False)
    app.worker_main(worker_argv(labels, concurrency, pool, loglevel, mingle, celery_options))
