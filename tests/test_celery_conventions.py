"""Celery's own command line against the project: ``celery -A pipeline ...`` and worker options.

Real processes only: ``celery -A pipeline worker`` and ``python cli.py worker`` subprocesses on
the session's redis-server, queried with ``celery -A pipeline inspect|status|events``.
"""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, pipeline_env, poll, run_cli, start_worker, stop_process
from pipeline.embedded.detached import write_atomic, write_pid

CELERY = (sys.executable, "-m", "celery")
"""``celery``, the command Celery installs, run with this interpreter."""

LABEL = "conv"


def celery(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``celery ARGS`` in the repository (as a user would) and capture its output."""
    return subprocess.run([*CELERY, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def node_name(prefix: str) -> str:
    """A worker node name nobody else in the session uses (``%h``: Celery puts the host name)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}@%h"


def expand(name: str) -> str:
    """``name`` with ``%h`` replaced as Celery does."""
    import socket

    return name.replace("%h", socket.gethostname())


def no_broker_env(tmp_path: Path) -> dict[str, str]:
    """Environment with no CELERY_BROKER_URL and an empty embedded-stack state directory."""
    env = pipeline_env("unused", PIPELINE_STATE_DIR=str(tmp_path / "state"))
    del env["CELERY_BROKER_URL"]
    return env


@pytest.fixture(scope="module")
def celery_worker(redis_server, tmp_path_factory):
    """A worker started with Celery's own command, ``celery -A pipeline worker``, on label ``conv``."""
    tmp = tmp_path_factory.mktemp("celeryworker")
    name = node_name("conv")
    env = pipeline_env(redis_server.url, PIPELINE_ARTIFACTS=str(tmp / "artifacts"))
    worker = start_worker(redis_server.url, tmp / "worker.log", "-A", "pipeline", "worker", "-Q", LABEL,
                          "-P", "threads", "-c", "4", "-n", name, "-l", "INFO", env=env, command=CELERY)
    worker.name = expand(name)
    yield worker
    stop_process(worker.proc)


def test_celery_command_line_finds_the_app_and_its_worker_runs_a_sweep(celery_worker, clean_redis, tmp_path):
    env = pipeline_env(clean_redis.url)
    ping = celery("-A", "pipeline", "inspect", "ping", "-d", celery_worker.name, env=env)
    assert ping.returncode == 0 and "pong" in ping.stdout, ping
    status = celery("-A", "pipeline", "status", env=env)
    assert status.returncode == 0 and celery_worker.name in status.stdout, status
    registered = celery("-A", "pipeline", "inspect", "registered", "-d", celery_worker.name, "--json", env=env)
    names = json.loads(registered.stdout)[celery_worker.name]
    for task in ("pipeline.download_dataset", "pipeline.train_model", "pipeline.fan_out", "pipeline.scheduled_run"):
        assert task in names, names

    # The worker Celery started is the project's whole worker: it runs a sweep end to end.
    artifacts = tmp_path / "artifacts"
    result = run_cli("sweep", "--alphas", "1.0", "0.1", "--label", LABEL, "--json",
                     env=pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(artifacts)))
    assert result.returncode == 0, result.stderr
    assert "no live worker" not in result.stderr  # its liveness bootstep recorded the queue
    document = json.loads(result.stdout)
    assert document["state"] == "Success" and len(document["results"]) == 2, document


def test_celery_events_sees_the_worker(celery_worker, redis_server, tmp_path):
    log = tmp_path / "events.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*CELERY, "-A", "pipeline", "events", "--dump"], cwd=ROOT,
                                env=pipeline_env(redis_server.url), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        poll(lambda: f"{celery_worker.name} [" in log.read_text(errors="replace"), timeout=60,
             what="a heartbeat of the worker in `celery events --dump`")
    finally:
        stop_process(proc)


@pytest.mark.parametrize("args", [("worker",), ("beat",), ("inspect", "ping"), ("status",), ("events",)])
def test_celery_command_without_a_broker_says_so_in_one_line(tmp_path, args):
    result = celery("-A", "pipeline", *args, env=no_broker_env(tmp_path))
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no broker configured: set CELERY_BROKER_URL=redis://" in lines[0], result.stderr
    assert result.stdout == ""


def test_celery_help_needs_no_broker(tmp_path):
    result = celery("-A", "pipeline", "worker", "--help", env=no_broker_env(tmp_path))
    assert result.returncode == 0 and "Start worker instance" in result.stdout, result


def test_celery_command_line_uses_the_running_embedded_stack(celery_worker, redis_server, tmp_path):
    """No CELERY_BROKER_URL, but an embedded stack's Redis recorded in the state directory: that is the broker."""
    state = tmp_path / "state"
    state.mkdir()
    write_atomic(state / "port", f"{redis_server.port}\n")  # what the embedded stack records of its Redis
    write_pid(state, "redis", redis_server.proc.pid)
    env = no_broker_env(tmp_path)
    ping = celery("-A", "pipeline", "inspect", "ping", "-d", celery_worker.name, env=env)
    assert ping.returncode == 0 and "pong" in ping.stdout, ping


def test_cli_worker_passes_celery_worker_options_through(redis_server, tmp_path):
    name = node_name("pass")
    worker = start_worker(redis_server.url, tmp_path / "worker.log", "--pool", "prefork", "--concurrency", "1",
                          "--hostname", name, "--max-tasks-per-child", "5", "--autoscale", "3,1", "-Q", "passq,other")
    try:
        env = pipeline_env(redis_server.url)
        stats = celery("-A", "pipeline", "inspect", "stats", "-d", expand(name), "--json", env=env)
        assert stats.returncode == 0, stats
        info = json.loads(stats.stdout)[expand(name)]
        assert info["pool"]["max-tasks-per-child"] == 5, info["pool"]
        assert (info["autoscaler"]["max"], info["autoscaler"]["min"]) == (3, 1), info.get("autoscaler")
        queues = celery("-A", "pipeline", "inspect", "active_queues", "-d", expand(name), "--json", env=env)
        assert sorted(q["name"] for q in json.loads(queues.stdout)[expand(name)]) == ["other", "passq"]
    finally:
        stop_process(worker.proc)


@pytest.mark.parametrize("args, message", [
    (["--no-such-option"], "No such option '--no-such-option'"),
    (["--max-tasks-per-child", "many"], "'many' is not a valid integer"),
])
def test_cli_worker_bad_celery_option_is_celerys_error_exit_2(redis_server, args, message):
    result = run_cli("worker", *args, env=pipeline_env(redis_server.url), timeout=120)
    assert result.returncode == 2, result
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_importing_the_package_imports_no_celery():
    """``pipeline.app`` is loaded on first access only: ``import pipeline.settings`` stays light."""
    check = ("import sys, pipeline, pipeline.settings; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu')))")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result
