#!/usr/bin/env python
"""Command line of the pipeline: submit runs and sweeps, wait for them, run workers.

With CELERY_BROKER_URL unset, commands use an embedded Redis and worker that they start
themselves; with it set, they only submit to and read from that deployment. The commands
live in ``pipeline/cli/``; the click group that assembles them is in
``pipeline/cli/main.py``, also installed as the ``pipeline`` command by ``pip install .``.
"""
from __future__ import annotations

from pipeline.cli.main import cli, exit_now, main

__all__ = ["cli", "exit_now", "main"]

if __name__ == "__main__":
    exit_now(main)
