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


PROBE_TIMEOUT = 0.5
"""Seconds a submission waits for the run pages to answer before naming the command instead."""


def run_page_answers(settings: Settings, run_id: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when ``PIPELINE_FLOWER_URL`` serves this run's page (``/api/runs/<run_id>`` answers
    200, or 401 when this shell lacks the credentials: the browser will ask for them)."""
    import base64
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    request = urllib.request.Request(f"{settings.flower_url}/api/runs/{quote(run_id)}")
    if settings.flower_basic_auth:
        credentials = settings.flower_basic_auth.split(",")[0]
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200
    except urllib.error.HTTPError as exc:
        return exc.code == 401  # there, behind basic auth this shell has no credentials for
    except (OSError, ValueError):
        return False


def where_to_look(settings: Settings, run_id: str) -> str:
    """The line a submission prints: the run's page when it answers, else how to start it."""
    page = f"{settings.flower_url}/runs/{run_id}"
    if run_page_answers(settings, run_id):
        return f"follow it in the browser: {page}"
    return f"follow it in a browser: python cli.py flower, then open {page}"


def is_loopback(address: str) -> bool:
    """True for an address only this machine can reach."""
    return address in ("127.0.0.1", "::1", "localhost") or address.startswith("127.")
