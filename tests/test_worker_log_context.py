"""A failed attempt's traceback is in ``logs`` under its task, and every line the worker
logs for a stage carries the run id and task key (through the session's real worker).
"""
from __future__ import annotations

import json
import logging

from conftest import poll, run_cli


def test_logs_show_each_failed_attempts_traceback_under_its_task(cli_env):
    result = run_cli("sweep", "--alphas", "1.0", "0.1", "--fail-rate", "1", "--retries", "1", "--json", env=cli_env)
    assert result.returncode == 1, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    logs = run_cli("logs", run_id, "--task", "train_model[1]", env=cli_env)
    assert logs.returncode == 0, logs.stderr
    lines = [line.split(" ", 2)[2] for line in logs.stdout.splitlines()]
    assert all(line.split(" ", 2)[1] == "train_model[1]" for line in logs.stdout.splitlines())
    first, second = lines.index("attempt 1 failed, retry in 0 s:"), lines.index("attempt 2 failed:")
    assert lines[:first] == ["train_model begin"]
    for start, end in ((first, second), (second, len(lines))):
        block = lines[start:end]
        assert block[1] == "Traceback (most recent call last):"
        assert any('in train_model' in line for line in block)
        assert block[-1 if end == len(lines) else -2].endswith("InjectedFailure: injected failure (fail rate 1.0)")
    as_json = json.loads(run_cli("logs", run_id, "--task", "train_model[0]", "--json", env=cli_env).stdout)
    assert {"task": "train_model[0]", "line": "attempt 2 failed:"} in [
        {"task": r["task"], "line": r["line"]} for r in as_json]


def test_every_line_the_worker_logs_for_a_stage_names_run_and_task(cli_env, worker):
    result = run_cli("sweep", "--alphas", "1.0", "--fail-rate", "1", "--json", env=cli_env)
    assert result.returncode == 1, result.stderr
    run_id = json.loads(result.stdout)["run_id"]

    def lines_of_run():
        return [line for line in worker.text().splitlines() if run_id in line]

    poll(lambda: any("raised unexpected" in line for line in lines_of_run()), "the worker to log the failure")
    tagged = lines_of_run()
    for key in ("download_dataset", "preprocess_dataset"):
        assert any(f"] {run_id} {key}: {key} begin" in line for line in tagged), tagged
        assert any(f"] {run_id} {key}: {key} end" in line for line in tagged), tagged
    assert any(f"] {run_id} train_model[0]: train_model begin" in line for line in tagged), tagged
    # Celery's own report of the failure is attributed too
    assert any(f"ERROR/MainProcess] {run_id} train_model[0]: Task pipeline.train_model[" in line for line in tagged)
    # lines logged outside a task say so rather than naming a stale one
    assert " ready." in worker.text() and any(
        "] - -: " in line and " ready." in line for line in worker.text().splitlines())


def test_log_records_carry_the_current_task_and_dashes_outside_one():
    from pipeline.worker import logcontext

    logcontext.install()
    record = logging.getLogger("t").makeRecord("t", logging.INFO, __file__, 1, "m", (), None)
    assert (record.run_id, record.task_key) == ("-", "-")
    logcontext._task_started(kwargs={"run_id": "r1", "key": "train_model[3]"})
    try:
        record = logging.getLogger("t").makeRecord("t", logging.INFO, __file__, 1, "m", (), None)
        assert (record.run_id, record.task_key) == ("r1", "train_model[3]")
    finally:
        logcontext._task_ended()
    assert logcontext.current() == ("-", "-")
