"""Run records and logs expire after the retention time; prune removes old runs now."""
from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import pipeline_env, run_cli, start_worker, stop_process
from pipeline.definition import flow
from pipeline.ledger.records import Ledger
from pipeline.redis_conn import make_client

RETENTION = "3"
"""Seconds; a little above the design's example of 2 so a loaded machine cannot expire a
run between two of its tasks."""


def run_keys(client, run_id: str) -> set[str]:
    return set(client.scan_iter(match=f"pipeline:run:{run_id}*"))


def finished_sweep(env: dict, *args: str) -> dict:
    result = run_cli("sweep", *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_records_logs_and_index_entries_expire(clean_redis, tmp_path):
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "artifacts"),
                       PIPELINE_RETENTION_SECONDS=RETENTION)
    short = start_worker(clean_redis.url, tmp_path / "short.log", "--pool", "threads", "--concurrency", "4",
                         "--label", "short", env=env)
    try:
        doc = finished_sweep(env, "--alphas", "1.0", "0.1", "--label", "short")
    finally:
        stop_process(short.proc)
    run_id, client = doc["run_id"], clean_redis.client()
    assert client.zscore("pipeline:runs", run_id) is not None
    assert f"pipeline:run:{run_id}:logs" in run_keys(client, run_id)
    assert all(0 < client.ttl(key) <= int(RETENTION) for key in run_keys(client, run_id))

    deadline = time.time() + 60
    while run_keys(client, run_id) and time.time() < deadline:
        time.sleep(0.2)
    assert not run_keys(client, run_id)
    listed = run_cli("runs", "--json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert client.zscore("pipeline:runs", run_id) is None  # the index entry went with the record
    assert (Path(doc["artifacts"]) / "eval_model_1.0_train_dataset.txt").exists()  # artifacts stay


def age(client, run_id: str, seconds: float) -> None:
    """Make ``run_id`` look created ``seconds`` ago (record and index)."""
    created = time.time() - seconds
    client.hset(f"pipeline:run:{run_id}", "created", repr(created))
    if client.zscore("pipeline:runs", run_id) is not None:
        client.zadd("pipeline:runs", {run_id: created})


def test_prune_removes_old_runs_only(cli_env, clean_redis):
    client = clean_redis.client()
    old = finished_sweep(cli_env, "--alphas", "1.0")
    ledger = Ledger(make_client(clean_redis.url), 3600)
    fields = {"flow": flow.FLOW_NAME, "version": 1, "params": {"alphas": [1.0]}, "state": "Pending"}
    new = {"run_id": "recent"}
    ledger.create_run("recent", {"id": "recent", **fields, "state": "Success"}, flow.task_keys(1))
    ledger.create_run("old-but-active", {"id": "old-but-active", **fields}, flow.task_keys(1))
    ledger.create_run("old-orphan", {"id": "old-orphan", **fields, "state": "Failed"}, flow.task_keys(1))
    client.zrem("pipeline:runs", "old-orphan")  # a record the index lost
    for run_id in (old["run_id"], "old-but-active", "old-orphan"):
        age(client, run_id, 1000)
    flows_before = client.hgetall("pipeline:flows:runs")

    nothing = run_cli("prune", env=cli_env)  # default: the retention, 7 days
    assert nothing.returncode == 0 and nothing.stdout.startswith("pruned 0 runs"), nothing.stdout

    result = run_cli("prune", "--older-than", "500", "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["pruned"] == 2 and doc["kept_active"] == ["old-but-active"] and doc["cutoff"].endswith("Z")
    assert not run_keys(client, old["run_id"]) and not run_keys(client, "old-orphan")
    assert client.zscore("pipeline:runs", old["run_id"]) is None
    assert run_keys(client, new["run_id"]) and run_keys(client, "old-but-active")
    assert client.hgetall("pipeline:flows:runs") == flows_before
    assert (Path(old["artifacts"]) / "eval_model_1.0_train_dataset.txt").exists()
    listed = json.loads(run_cli("runs", "--json", env=cli_env).stdout)
    assert [r["run_id"] for r in listed] == [new["run_id"], "old-but-active"]
