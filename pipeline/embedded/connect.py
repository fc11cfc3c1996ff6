"""Connect the CLI to a broker: the configured one, or the embedded stack it starts itself."""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace

from pipeline.ledger.records import Ledger
from pipeline.brokers import check_reachable, check_supported
from pipeline.redis_conn import make_client
from pipeline.settings import PREFORK, Settings

REACH_TIMEOUT = 2.0
"""Seconds to wait for the broker before reporting it unreachable (the contract says 5)."""

WORKER_MODULE = "pipeline.cli.main"
"""Module the embedded worker runs (``python -m``): the CLI itself, found on ``sys.path``
whether the project is a checkout (``cli.py`` beside it) or installed with ``pip install .``."""


@dataclass(frozen=True)
class Connection:
    """Where this command talks to: the broker URL, the ledger, and the embedded stack if any."""

    url: str
    ledger: Ledger
    embedded: bool


def embedded_worker_argv(settings: Settings) -> list[str]:
    """The command the embedded stack runs its worker with.

    A prefork pool, so the stages' Python (``loadtxt``, ``fit``: they hold the GIL) runs on
    every core; autoscaled from one process when idle up to ``settings.embedded_concurrency``
    (the core count, at least the nine slots of a six-alpha sweep's cleanups). Celery grows
    the pool as soon as messages wait and shrinks it after 30 s without new ones.
    """
    return [sys.executable, "-m", WORKER_MODULE, "worker", "--pool", PREFORK,
            "--autoscale", f"{settings.embedded_slots()},1",
            "--without-mingle"]  # alone on its private Redis: nobody to sync with at start-up


def connect(settings: Settings, announce=print) -> Connection:
    """Reach the configured broker (raising UnsupportedBroker for one we cannot serve,
    BrokerUnreachable) or start/reuse the embedded stack.

    The ledger is the run record's Redis (:attr:`Settings.ledger_url`: the broker's, or the
    result backend's with RabbitMQ). Configures the Celery app for the URL, so canvases sent
    afterwards go there.
    """
    if settings.broker_url:
        check_supported(settings)
        check_reachable(settings.broker_url, REACH_TIMEOUT)
        if settings.ledger_url != settings.broker_url:
            check_reachable(settings.ledger_url, REACH_TIMEOUT)
        url, embedded = settings.ledger_url, False
    else:
        from pipeline.embedded import stack
        info = stack.ensure_stack(settings, embedded_worker_argv(settings))
        if info.started_now:
            announce(
                f"Started the embedded Redis ({info.url}) and worker; state and logs in "
                f"{info.state_dir}. They stop after {settings.idle_exit_seconds / 60:g} idle minutes; "
                "`python cli.py stop` stops them now."
            )
        else:
            stack.touch(settings)
        if info.worker_replaced:
            announce("The pipeline's code changed since the embedded worker started: restarted it "
                     "with this code (runs submitted with the old code wait for a worker of theirs).")
        url, embedded = info.url, True
        settings = replace(settings, broker_url=url, result_backend=url)
    from pipeline.celery_app import app, configure  # after the reach check: Celery is slow to import

    configure(app, settings)
    return Connection(url, Ledger(make_client(url, settings), settings.retention_seconds), embedded)
