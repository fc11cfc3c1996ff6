"""The app as Celery's own command line finds it: ``celery -A pipeline worker|inspect|events|...``.

Celery's ``find_app`` (``celery/app/utils.py``) takes ``pipeline.app``; the package
provides it lazily (``pipeline/__init__.py``), so importing ``pipeline.settings`` and the
like starts and imports nothing of Celery. The app is :data:`pipeline.celery_app.app`,
bound to a broker: ``CELERY_BROKER_URL`` (``celery --broker URL`` sets it), else the
Redis of the embedded stack if one is running. With neither, a command that talks to the
broker stops with one line and exit code 2 instead of falling back to Celery's default
broker (``amqp://guest@localhost//``, where the worker would wait, or even run, unnoticed).
"""
from __future__ import annotations

import sys
from dataclasses import replace

import click
from celery import Celery

from pipeline.settings import Settings, get_settings

BROKER_COMMANDS = frozenset({
    "worker", "beat", "events", "inspect", "control", "status", "call", "purge", "result",
    "migrate", "list", "amqp", "flower",
})
"""Subcommands of ``celery`` that need a broker (``report``, ``shell``, ``graph``... do not)."""

NO_BROKER = ("no broker configured: set CELERY_BROKER_URL=redis://HOST:6379/0 (or start the "
             "embedded stack first, e.g. with `python cli.py sweep` or `pipeline sweep`, and run this "
             "in its directory)")
"""The one line ``celery -A pipeline <command>`` prints when it has no broker to talk to."""


def embedded_url(settings: Settings) -> str | None:
    """The running embedded stack's Redis URL (its state in ``PIPELINE_STATE_DIR``), else None."""
    from pipeline.embedded.stack import stack_running  # starts nothing, reads the state files

    info = stack_running(settings)
    return info.url if info else None


def celery_subcommand() -> str | None:
    """The ``celery`` subcommand being invoked, if Celery's command line is loading the app now."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.find_root().command.name != "celery":
        return None
    return ctx.find_root().invoked_subcommand


def needs_broker(subcommand: str | None, argv: list[str]) -> bool:
    """True if ``celery <subcommand>`` will talk to the broker (not when it only shows its help)."""
    return subcommand in BROKER_COMMANDS and "--help" not in argv


def command_line_app() -> Celery:
    """``pipeline.app``: the Celery app bound to the configured broker or the embedded stack's Redis.

    Exits with one line (code 2) when neither exists and the ``celery`` subcommand needs one.
    """
    from pipeline.celery_app import app, configure

    settings = get_settings()
    if settings.broker_url:
        if needs_broker(celery_subcommand(), sys.argv[1:]):
            from pipeline.cli.common import check_broker_or_exit

            check_broker_or_exit(settings)  # one line for a broker we cannot serve
        return app  # configured from the environment when pipeline.celery_app was imported
    url = embedded_url(settings)
    if url:
        return configure(app, replace(settings, broker_url=url, result_backend=url))
    if needs_broker(celery_subcommand(), sys.argv[1:]):
        click.echo(f"error: {NO_BROKER}", err=True)
        sys.exit(2)
    return app
