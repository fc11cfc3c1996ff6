"""runs, status and logs against a real redis-server and worker (tests/conftest.py)."""
from __future__ import annotations

import json
import re
import time

import pytest

from conftest import flush_keeping_workers, pipeline_env, run_cli
from pipeline.definition import flow
from pipeline.ledger.records import Ledger
from pipeline.redis_conn import make_client

THREE = ["1.0", "0.1", "0.01"]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def sweep(env: dict, *args: str) -> str:
    """Run a sweep to its end; return its run id."""
    result = run_cli("sweep", *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["run_id"]


def cli_json(env: dict, *args: str):
    result = run_cli(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


_swept: dict[str, object] = {}


@pytest.fixture
def three(redis_server, worker, tmp_path_factory) -> tuple[dict, str]:
    """``(env, run_id)`` of a finished 3-alpha sweep, alone in Redis; swept once, reused while it lasts."""
    client = redis_server.client()
    if not _swept or client.dbsize() == 0 or client.zcard("pipeline:runs") != 1 \
            or not client.exists(f"pipeline:run:{_swept['run_id']}"):
        flush_keeping_workers(client)
        env = pipeline_env(redis_server.url, PIPELINE_ARTIFACTS=str(tmp_path_factory.mktemp("three")))
        _swept.update(env=env, run_id=sweep(env, "--alphas", *THREE))
    return _swept["env"], _swept["run_id"]


def test_status_and_runs_after_a_three_alpha_sweep(three):
    cli_env, run_id = three

    doc = cli_json(cli_env, "status", run_id)
    assert doc["run_id"] == run_id and doc["state"] == "Success" and doc["stuck"] is False
    assert doc["version"] == 1 and doc["flow"] == flow.FLOW_NAME and doc["params"]["alphas"] == [1.0, 0.1, 0.01]
    assert doc["artifacts"].endswith(run_id)
    assert [t["key"] for t in doc["tasks"]] == flow.task_keys(3)
    for task in doc["tasks"]:
        assert task["state"] == "Success" and task["attempts"] == 1, task
        assert ISO.match(task["started"]) and ISO.match(task["ended"]), task
        assert task["started"] <= task["ended"] and task["duration"] >= 0, task
    assert doc["started"] <= min(t["started"] for t in doc["tasks"])
    assert doc["ended"] >= max(t["ended"] for t in doc["tasks"])

    listed = cli_json(cli_env, "runs")
    assert isinstance(listed, list) and [r["run_id"] for r in listed] == [run_id]
    summary = listed[0]
    for field in ("run_id", "state", "version", "label", "created", "started", "ended", "duration", "stuck"):
        assert summary[field] == doc[field], field
    assert ISO.match(summary["created"]) and summary["tasks_done"] == summary["tasks_total"] == len(flow.task_keys(3))

    text = run_cli("status", run_id, env=cli_env)
    assert text.returncode == 0, text.stderr
    assert "timeline" in text.stdout
    for key in flow.task_keys(3):
        alpha = THREE[int(key[-2])] if key.startswith(("train", "evaluate")) else "-"
        assert re.search(rf"^{re.escape(key)}\s+{re.escape(alpha)}\s+Success\s+1\s+\d", text.stdout, re.M), key
        assert re.search(rf"^{re.escape(key)}\s+\|[ =]*=[ =]*\|$", text.stdout, re.M), key
    table = run_cli("runs", env=cli_env)
    assert table.returncode == 0 and re.search(rf"^{run_id}\s+v1\s+Success\s", table.stdout, re.M)


def test_logs_show_each_stage_under_its_task_key(three):
    cli_env, run_id = three
    lines = cli_json(cli_env, "logs", run_id)
    by_task: dict[str, list[str]] = {}
    for line in lines:
        assert ISO.match(line["time"]), line
        by_task.setdefault(line["task"], []).append(line["line"])
    assert sorted(by_task) == sorted(flow.task_keys(3))
    for key, printed in by_task.items():
        stage = key.split("[")[0]
        assert printed == [f"{stage} begin", f"{stage} end"], key

    text = run_cli("logs", run_id, env=cli_env)
    assert text.returncode == 0, text.stderr
    rows = text.stdout.splitlines()
    assert len(rows) == 2 * len(flow.task_keys(3))
    assert all(re.match(r"^\S+Z (\S+) (\S+) (begin|end)$", row) for row in rows), rows
    assert rows[0].split(" ", 1)[1] == "download_dataset download_dataset begin"

    only = run_cli("logs", run_id, "--task", "train_model[1]", env=cli_env)
    assert [row.split(" ", 1)[1] for row in only.stdout.splitlines()] == [
        "train_model[1] train_model begin", "train_model[1] train_model end"]


def test_inspection_commands_refuse_bad_input(three, monkeypatch, capsys):
    import cli

    for name, value in three[0].items():
        monkeypatch.setenv(name, value)

    def refused(*argv: str) -> str:
        try:
            cli.main(list(argv))
        except SystemExit as exc:
            assert exc.code == 2, argv
        else:
            raise AssertionError(f"{argv} was accepted")
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[0]

    assert "nope" in refused("status", "nope")
    assert "bad id" in refused("status", "bad id!")
    assert "nope" in refused("logs", "nope", "--follow")
    assert "train_model[3]" in refused("logs", three[1], "--task", "train_model[3]")
    assert "bogus" in refused("logs", three[1], "--task", "bogus", "--follow")
    assert "0" in refused("runs", "--limit", "0")
    assert "-5" in refused("prune", "--older-than", "-5")
    assert "nan" in refused("prune", "--older-than", "nan")
    for command in ("runs", "status", "logs", "flows", "prune"):
        assert cli.main([command, "--help"]) == 0
        assert len(capsys.readouterr().out.splitlines()) > 3, command


def test_runs_lists_newest_first_and_limits(clean_redis):
    ledger = Ledger(make_client(clean_redis.url), 3600)
    for run_id in ("first", "second", "third"):
        ledger.create_run(run_id, {"id": run_id, "flow": flow.FLOW_NAME, "version": 1, "state": "Success",
                                   "params": {"alphas": [1.0]}}, flow.task_keys(1))
    env = pipeline_env(clean_redis.url)
    assert [r["run_id"] for r in cli_json(env, "runs")] == ["third", "second", "first"]
    assert [r["run_id"] for r in cli_json(env, "runs", "--limit", "2")] == ["third", "second"]


def test_every_key_of_a_run_expires(cli_env, clean_redis):
    failed = run_cli("sweep", "--alphas", "1.0", "--retries", "1", "--fail-rate", "1", "--json", env=cli_env)
    assert failed.returncode == 1, failed.stderr  # a failed run has every kind of key, errors included
    run_id = json.loads(failed.stdout)["run_id"]
    client = clean_redis.client()
    keys = list(client.scan_iter(match=f"pipeline:run:{run_id}*"))
    assert {f"pipeline:run:{run_id}{part}" for part in ("", ":state", ":attempts", ":started", ":ended",
                                                        ":output", ":error", ":logs", ":celery",
                                                        ":history", ":files")} == set(keys)
    ttls = {key: client.ttl(key) for key in keys}
    assert all(0 < ttl <= 7 * 24 * 3600 for ttl in ttls.values()), ttls


def test_logs_follow_prints_every_line_and_returns_when_the_run_ends(cli_env):
    result = run_cli("sweep", "--alphas", "1.0", "0.1", "--sleep", "0.3", "--no-wait", env=cli_env)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    followed = run_cli("logs", run_id, "--follow", env=cli_env, timeout=120)
    assert followed.returncode == 0, followed.stderr
    assert cli_json(cli_env, "status", run_id)["state"] == "Success"
    rows = followed.stdout.splitlines()
    assert len(rows) == 2 * len(flow.task_keys(2))
    assert rows[-1].endswith(" cleanup_file end")

    mine = run_cli("logs", run_id, "--follow", "--task", "evaluate_model[1]", "--json", env=cli_env)
    assert [json.loads(row)["line"] for row in mine.stdout.splitlines()] == ["evaluate_model begin",
                                                                              "evaluate_model end"]


def test_a_run_without_progress_is_flagged_stuck(clean_redis, tmp_path):
    ledger = Ledger(make_client(clean_redis.url), 3600)
    assert ledger.create_run("lost-run", {"id": "lost-run", "flow": flow.FLOW_NAME, "version": 1,
                                          "params": {"alphas": [1.0], "sleep": 0, "retry_delay": 0},
                                          "state": "Running", "artifacts": str(tmp_path)}, flow.task_keys(1))
    env = pipeline_env(clean_redis.url, PIPELINE_STUCK_AFTER="60")
    assert cli_json(env, "status", "lost-run")["stuck"] is False
    ledger.update_run("lost-run", updated=time.time() - 61)
    assert cli_json(env, "status", "lost-run")["stuck"] is True
    assert cli_json(env, "runs")[0]["stuck"] is True
    text = run_cli("runs", env=env).stdout
    assert "Running (stuck)" in text
    followed = run_cli("logs", "lost-run", "--follow", env=env, timeout=60)  # returns instead of hanging
    assert followed.returncode == 0 and "is stuck" in followed.stderr, followed.stderr
