"""Redis restarted without persistence: the lost run is said in one line, and the worker warned.

A Redis with ``--appendonly no --save ""`` comes back empty from a restart: the run record
of a run in flight is gone. ``sweep`` (waiting), ``wait`` and ``status`` each say so in
one line and exit 1, no traceback; the worker said at start that its Redis persists
nothing; a Redis that refuses CONFIG (a managed one) gets no warning, and neither does
one with append-only persistence.
"""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from conftest import CLI, ROOT, start_redis
from faultkit import make_stack, poll
from pipeline.cli.common import EXIT_FAILED
from pipeline.definition import flow

pytestmark = pytest.mark.slow

NO_PERSISTENCE = ("--appendonly", "no", "--save", "")
WARNING = "persists nothing (appendonly no)"


def one_error_line(result_stderr: str) -> str:
    assert "Traceback" not in result_stderr, result_stderr
    lines = [line for line in result_stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result_stderr
    return lines[0]


def test_run_lost_by_a_redis_without_persistence_is_said_in_one_line(tmp_path):
    stack = make_stack(tmp_path)
    stack.redis.proc.send_signal(signal.SIGTERM)
    stack.redis.proc.wait(15)
    stack.redis = start_redis(stack.redis.data_dir, stack.redis.port, extra=NO_PERSISTENCE)
    try:
        worker = stack.worker("--pool", "threads", "--concurrency", "4")
        assert WARNING in worker.text(), worker.text()
        ledger = stack.ledger()
        sweep = subprocess.Popen([sys.executable, CLI, "sweep", "--alphas", "1.0", "0.1", "--sleep", "2"],
                                 cwd=ROOT, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            run_id = poll(lambda: next(iter(r["id"] for r in ledger.list_runs()), None), "the run to be recorded")
            poll(lambda: ledger.task_states(run_id).get(flow.PREPROCESS) == "Running", "preprocess to run")
            stack.redis.proc.send_signal(signal.SIGKILL)
            stack.redis.proc.wait(15)
            stack.redis = start_redis(stack.redis.data_dir, stack.redis.port, extra=NO_PERSISTENCE)
            _, err = sweep.communicate(timeout=90)
        finally:
            if sweep.poll() is None:
                sweep.kill()
        assert sweep.returncode == EXIT_FAILED, err
        line = one_error_line(err)
        assert f"run {run_id} is no longer recorded in Redis" in line and "docs/reliability.md" in line, line

        directory = stack.artifacts / run_id
        assert (directory / "dataset.csv").exists()  # the files outlived their record
        for command in (["status", run_id], ["wait", run_id], ["status", run_id, "--json"]):
            result = stack.cli(*command, timeout=60)
            assert result.returncode == EXIT_FAILED, (command, result)
            line = one_error_line(result.stderr)
            assert f"run {run_id} is no longer recorded in Redis (its files are still in {directory})" in line
        unknown = stack.cli("status", "20260101T000000Z-0a0a0a")
        assert unknown.returncode == 2 and "no run '20260101T000000Z-0a0a0a'" in unknown.stderr  # a typo stays 2
    finally:
        stack.close()


def test_no_warning_when_redis_persists_or_refuses_config(tmp_path):
    persistent = make_stack(tmp_path / "aof")
    try:
        assert "Redis at" not in persistent.worker("--pool", "threads").text()
    finally:
        persistent.close()
    managed = make_stack(tmp_path / "managed")
    managed.redis.proc.send_signal(signal.SIGTERM)
    managed.redis.proc.wait(15)
    managed.redis = start_redis(managed.redis.data_dir, managed.redis.port,
                                extra=(*NO_PERSISTENCE, "--rename-command", "CONFIG", ""))
    try:
        text = managed.worker("--pool", "threads").text()
        assert "Redis at" not in text and "Traceback" not in text, text
    finally:
        managed.close()


def test_the_warning_names_queued_tasks_only_where_redis_holds_them(tmp_path):
    """With RabbitMQ as the broker the run record's Redis holds no queue: the warning says so."""
    from pipeline.worker.redis_checks import persistence_warnings

    server = start_redis(tmp_path / "np", extra=NO_PERSISTENCE)
    try:
        client = server.client()
        (broker,) = persistence_warnings(client, "here")
        (ledger_only,) = persistence_warnings(client, "here", holds_queues=False)
    finally:
        server.proc.terminate()
        server.proc.wait(15)
    assert WARNING in broker and "queued tasks" in broker
    assert WARNING in ledger_only and "queued tasks" not in ledger_only and "run records" in ledger_only
