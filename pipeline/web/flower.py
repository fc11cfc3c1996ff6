"""Flower, the web view of the workers and tasks (and our run pages): its command line and links into it."""
from __future__ import annotations

import sys

from pipeline.settings import FLOWER_PORT, Settings

TASK_COLUMNS = "name,uuid,state,kwargs,received,started,runtime,worker"
"""Columns of Flower's tasks page: kwargs shows each task's run id and task key."""


def flower_argv(settings: Settings, port: int = FLOWER_PORT, address: str = "127.0.0.1") -> list[str]:
    """Flower with the run pages (:mod:`pipeline.web.server`), with basic auth when configured."""
    argv = [sys.executable, "-m", "pipeline.web.server",
            f"--port={port}", f"--address={address}", "--purge_offline_workers=60",
            f"--tasks_columns={TASK_COLUMNS}"]
    if settings.flower_basic_auth:
        argv.append(f"--basic-auth={settings.flower_basic_auth}")
    return argv


def run_search(run_id: str) -> str:
    """Flower's search query matching exactly the tasks of one run (by the run_id kwarg)."""
    return f"kwargs:run_id={run_id}"


def where_to_look(settings: Settings, run_id: str) -> str:
    """The line a submission prints: Flower's tasks page and the search for this run."""
    return f"watch it in Flower: {settings.flower_url}/tasks, search: {run_search(run_id)}"


def is_loopback(address: str) -> bool:
    """True for an address only this machine can reach."""
    return address in ("127.0.0.1", "::1", "localhost") or address.startswith("127.")
