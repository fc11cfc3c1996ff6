"""Starting a Celery worker on the queues of one or more labels."""
from __future__ import annotations

import os
from typing import Sequence

from pipeline.celery_app import app
from pipeline.settings import DEFAULT_QUEUE

POOLS = ("prefork", "threads", "solo")
"""Execution pools a worker can use."""


def worker_argv(labels: Sequence[str], concurrency: int | None, pool: str, loglevel: str = "INFO",
                mingle: bool = True) -> list[str]:
    """Arguments for ``celery worker``: the labels' queues (default queue without labels).

    ``mingle=False`` skips Celery's start-up sync with other workers, which waits a full
    second for replies: pointless for a worker that is alone (the embedded stack's).
    """
    queues = list(dict.fromkeys(labels)) or [DEFAULT_QUEUE]
    name = f"{'+'.join(queues)}.{os.getpid()}@%h"
    argv = ["worker", "-Q", ",".join(queues), "-P", pool, "-E", "--loglevel", loglevel, "-n", name]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if not mingle:
        argv.append("--without-mingle")
    return argv


def run_worker(labels: Sequence[str], concurrency: int | None, pool: str, loglevel: str = "INFO",
               mingle: bool = True) -> None:
    """Run a worker in this process until it is stopped."""
    import pipeline.tasks  # noqa: F401  (registers the stage tasks before the worker starts)

    app.worker_main(worker_argv(labels, concurrency, pool, loglevel, mingle))
