"""The pipeline: stages, flow shape, canvas, tasks and the run ledger.

``pipeline.app`` is the Celery app as ``celery -A pipeline ...`` finds it (see
:mod:`pipeline.celery_cli`); it is loaded on first access, so importing any other part of
the package imports no Celery and connects to nothing.
"""
from __future__ import annotations


def __getattr__(name: str):
    """``pipeline.app``, loaded lazily (PEP 562): Celery's ``find_app`` looks for it."""
    if name == "app":
        from pipeline.celery_cli import command_line_app

        return command_line_app()
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
