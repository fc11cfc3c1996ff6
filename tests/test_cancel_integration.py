"""cancel through the CLI with real workers: threads (the session's) and prefork (terminates)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

from conftest import CLI, ROOT, poll, run_cli, start_worker, stop_process
from pipeline.definition import flow
from test_restart_integration import eval_names
from test_stages import tutorial_score
from test_sweep_integration import ledger_for

UNFINISHED = ("Pending", "Running", "Retrying")


def ended(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_cancel_a_running_sweep_then_restart_it_to_success(cli_env, clean_redis):
    ledger = ledger_for(clean_redis.url)
    sent = run_cli("sweep", "--alphas", "1.0", "0.1", "--sleep", "2", "--no-wait", "--json", env=cli_env)
    assert sent.returncode == 0, sent.stderr
    run_id, run_dir = json.loads(sent.stdout)["run_id"], Path(json.loads(sent.stdout)["artifacts"])
    poll(lambda: ledger.task_states(run_id).get(flow.DOWNLOAD) == "Running", "download_dataset to run")

    refused = run_cli("restart", run_id, env=cli_env)
    assert refused.returncode == 2 and f"run {run_id} is running" in refused.stderr

    waiter = subprocess.Popen([sys.executable, CLI, "wait", run_id, "--json"], cwd=ROOT, env=cli_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        poll(lambda: ledger.task_states(run_id).get(flow.train_key(0)) == "Running", "train_model[0] to run")
        cancelled = run_cli("cancel", run_id, env=cli_env)
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"run {run_id} cancelled" in cancelled.stdout
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 1, err
    assert json.loads(out)["state"] == "Cancelled"

    run = ledger.get_run(run_id)
    assert run["state"] == "Cancelled" and run["cancelled"] == "1" and run["ended"]
    rows = {r["key"]: r for r in ledger.tasks(run_id, flow.task_keys(2))}
    assert rows[flow.DOWNLOAD]["state"] == rows[flow.PREPROCESS]["state"] == "Success"
    stopped = [k for k, r in rows.items() if r["state"] != "Success"]
    # which trains had ended depends on timing; their evaluations and the cleanups had not
    assert {flow.evaluate_key(0), flow.cleanup_key(0)} <= set(stopped)
    assert f"{len(stopped)} tasks stopped" in cancelled.stdout
    assert all(rows[k]["state"] == "Cancelled" and rows[k]["error"] == "cancelled" for k in stopped)
    assert not [k for k, r in rows.items() if r["state"] in UNFINISHED]
    attempts_before = {k: r["attempts"] for k, r in rows.items()}

    again = run_cli("cancel", run_id, env=cli_env)
    assert again.returncode == 2 and "already ended (Cancelled)" in again.stderr

    # restart at once: the cancelled train bodies may still be sleeping in their threads
    restarted = run_cli("restart", run_id, "--json", env=cli_env)
    assert restarted.returncode == 0, restarted.stderr
    doc = json.loads(restarted.stdout)
    assert doc["state"] == "Success"
    assert doc["results"] == {"1.0": tutorial_score(17, 100, 1.0), "0.1": tutorial_score(17, 100, 0.1)}
    assert sorted(p.name for p in run_dir.iterdir()) == eval_names([1.0, 0.1])
    rows = {r["key"]: r for r in ledger.tasks(run_id, flow.task_keys(2))}
    assert all(r["state"] == "Success" and r["error"] is None for k, r in rows.items() if k in stopped)
    # only the stopped tasks ran again, once each
    assert {k: r["attempts"] for k, r in rows.items()} == {
        k: n + (k in stopped) for k, n in attempts_before.items()}
    assert rows[flow.DOWNLOAD]["attempts"] == rows[flow.PREPROCESS]["attempts"] == 1
    assert ledger.get_run(run_id)["cancelled"] == "0"


def test_cancel_terminates_a_running_task_on_a_prefork_worker(clean_redis, tmp_path, cli_env):
    ledger = ledger_for(clean_redis.url)
    worker = start_worker(clean_redis.url, tmp_path / "prefork.log", "--pool", "prefork", "--concurrency", "1",
                          "--label", "pf")
    try:
        sent = run_cli("run", "--label", "pf", "--sleep", "60", "--no-wait", env=cli_env)
        assert sent.returncode == 0, sent.stderr
        run_id = sent.stdout.strip()
        poll(lambda: any(f["line"] == "download_dataset begin" for _, f in ledger.read_logs(run_id)),
             "download_dataset to begin")
        task_id = ledger.task_ids(run_id)[flow.DOWNLOAD]
        (pool_process,) = psutil.Process(worker.proc.pid).children()

        cancelled = run_cli("cancel", run_id, env=cli_env)
        assert cancelled.returncode == 0, cancelled.stderr
        poll(lambda: f"Terminating {task_id}" in worker.text(), "the worker to terminate the task")
        poll(lambda: ended(pool_process), "the pool process running the task to end")
        client = clean_redis.client()
        assert client.llen("pf") == 0 and client.hlen("unacked") == 0  # terminated, not requeued
        assert ledger.get_run(run_id)["state"] == "Cancelled"
        row = ledger.tasks(run_id, [flow.DOWNLOAD])[0]
        assert (row["state"], row["error"], row["attempts"]) == ("Cancelled", "cancelled", 1)
        assert not any(f["line"] == "download_dataset end" for _, f in ledger.read_logs(run_id))
    finally:
        stop_process(worker.proc)
