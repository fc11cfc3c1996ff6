"""What a failed or cancelled run tells its user: the failed tasks, the blocked ones, the
commands to type next; the same in ``--json`` and in ``status --json`` (one builder).

Through the CLI, a real redis-server and the session's real worker.
"""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import CLI, ROOT, poll, run_cli
from pipeline.definition import flow
from test_sweep_integration import ledger_for

ERROR = "InjectedFailure: injected failure (fail rate 1.0)"


def test_failed_sweep_lists_failed_tasks_blocked_count_and_next_commands(cli_env, clean_redis):
    result = run_cli("sweep", "--alphas", "1.0", "0.1", "--fail-rate", "1", env=cli_env)
    assert result.returncode == 1, result.stderr
    run_id = result.stdout.split()[1].rstrip(":")
    out = result.stdout
    assert f"run {run_id}: Failed; artifacts in " in out
    assert "2 tasks failed:" in out
    failed_lines = [line.split() for line in out.splitlines() if line.startswith("  train_model[")]
    assert [(w[0], w[2]) for w in failed_lines] == [("train_model[0]", "1.0"), ("train_model[1]", "0.1")]
    assert all(ERROR in line for line in out.splitlines() if line.startswith("  train_model["))
    # 2 evaluations and the 5 cleanups never ran
    assert "7 tasks blocked (TriggerFailed)" in out
    for command in (f"python cli.py status {run_id}", f"python cli.py logs {run_id} --task 'train_model[0]'",
                    f"python cli.py restart {run_id}"):
        assert command in out


def test_failed_sweep_json_and_status_json_carry_the_same_failures(cli_env, clean_redis):
    result = run_cli("sweep", "--alphas", "1.0", "0.1", "--fail-rate", "1", "--json", env=cli_env)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["failed"] == [{"key": "train_model[0]", "alpha": "1.0", "error": ERROR},
                             {"key": "train_model[1]", "alpha": "0.1", "error": ERROR}]
    assert doc["blocked"] == 7 and doc["cancelled"] == 0
    status = run_cli("status", doc["run_id"], "--json", env=cli_env)
    assert status.returncode == 0, status.stderr
    status_doc = json.loads(status.stdout)
    assert (status_doc["failed"], status_doc["blocked"]) == (doc["failed"], doc["blocked"])
    tasks = {t["key"]: t for t in status_doc["tasks"]}
    assert tasks["train_model[1]"]["alpha"] == tasks["evaluate_model[1]"]["alpha"] == "0.1"
    assert tasks["download_dataset"]["alpha"] is None


def test_successful_sweep_reports_no_failures(cli_env):
    result = run_cli("sweep", "--alphas", "1.0", "0.1", "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["failed"], doc["blocked"], doc["cancelled"]) == ([], 0, 0)
    text = run_cli("wait", doc["run_id"], env=cli_env)
    assert text.returncode == 0 and "failed" not in text.stdout and "next:" not in text.stdout


def test_cancelled_run_says_so_and_how_to_resume(cli_env, clean_redis):
    ledger = ledger_for(clean_redis.url)
    sent = run_cli("sweep", "--alphas", "1.0", "0.1", "--sleep", "2", "--no-wait", env=cli_env)
    assert sent.returncode == 0, sent.stderr
    run_id = sent.stdout.strip()
    waiter = subprocess.Popen([sys.executable, CLI, "wait", run_id], cwd=ROOT, env=cli_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        poll(lambda: ledger.task_states(run_id).get(flow.DOWNLOAD) == "Running", "download_dataset to run")
        cancelled = run_cli("cancel", run_id, env=cli_env)
        assert cancelled.returncode == 0, cancelled.stderr
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 1, err
    assert f"run {run_id}: Cancelled" in out
    states = ledger.task_states(run_id)
    stopped = sorted(k for k, s in states.items() if s == "Cancelled")
    # each stage sleeps 2 s: how many ended before the cancel depends on the machine's load
    assert {"evaluate_model[0]", "cleanup_file[4]"} <= set(stopped), states
    assert set(states.values()) <= {"Success", "Cancelled"}, states
    assert f"run {run_id} was cancelled: {len(stopped)} tasks stopped before they ended" in out
    assert f"python cli.py restart {run_id}" in out
    status = run_cli("status", run_id, env=cli_env)
    table = status.stdout.split("\ntimeline")[0]
    rows = {line.split()[0]: line.split()[2] for line in table.splitlines() if line.startswith(
        ("download_dataset", "evaluate_model[", "cleanup_file["))}
    assert rows["evaluate_model[0]"] == rows["cleanup_file[4]"] == "Cancelled"
    assert rows["download_dataset"] == states["download_dataset"]
    assert f"restart {run_id}" in status.stdout
    doc = json.loads(run_cli("status", run_id, "--json", env=cli_env).stdout)
    assert doc["cancelled"] == len(stopped) and doc["failed"] == [] and doc["state"] == "Cancelled"


def test_failure_summary_takes_the_last_line_of_an_error_and_counts_states():
    from pipeline.ledger.status import failure_summary

    rows = [
        {"key": "download_dataset", "state": "Success", "error": None},
        {"key": "train_model[0]", "state": "Failed", "error": "Traceback (most recent call last):\n  x\nValueError: bad\n"},
        {"key": "evaluate_model[0]", "state": "TriggerFailed", "error": "upstream train_model[0] failed"},
        {"key": "train_model[1]", "state": "Cancelled", "error": "cancelled"},
        {"key": "cleanup_file[0]", "state": "Failed", "error": ""},
    ]
    assert failure_summary(rows, [1e-05, None]) == {
        "failed": [{"key": "train_model[0]", "alpha": "1e-05", "error": "ValueError: bad"},
                   {"key": "cleanup_file[0]", "alpha": None, "error": None}],
        "blocked": 1,
        "cancelled": 1,
    }


def test_status_text_shows_alpha_readable_r2_cancelled_and_next_steps():
    from pipeline.cli.views import status_text
    from pipeline.ledger.status import status_document

    now = 1_800_000_000.0
    run = {"id": "r1", "flow": "f", "version": "1", "state": "Cancelled", "created": repr(now),
           "started": repr(now), "ended": repr(now + 4), "updated": repr(now + 4),
           "params": {"alphas": [1.0, 1e-05]}, "artifacts": "/a"}

    def row(key, state, output=None, error=None):
        return {"key": key, "state": state, "attempts": 1, "started": now, "ended": now + 1, "output": output,
                "error": error}

    rows = [row("train_model[0]", "Success", "m.joblib"),
            row("evaluate_model[0]", "Success", {"file": "e.txt", "score": 0.9655153179853411816}),
            row("train_model[1]", "Cancelled", error="cancelled")]
    doc = status_document(run, rows, 300, now=now + 4)
    assert doc["tasks"][1]["output"]["score"] == 0.9655153179853411816  # --json keeps every digit
    text = status_text(doc, now + 4, columns=80)
    table = text.split("\ntimeline")[0].split("\n\n")[1].splitlines()
    assert table[0].split() == ["task", "alpha", "state", "attempts", "duration", "R^2", "error"]
    assert table[3].split()[:6] == ["evaluate_model[0]", "1.0", "Success", "1", "1.00s", "0.965515"]
    assert table[4].split()[:3] == ["train_model[1]", "1e-05", "Cancelled"]
    assert "Cancelled: 0 failed, 0 blocked (TriggerFailed), 1 cancelled" in text
    assert text.endswith("run what did not succeed again: python cli.py restart r1")


def test_restart_overrides_fail_rate_and_retries_for_the_tasks_it_reruns(cli_env, clean_redis):
    from test_stages import tutorial_score

    ledger = ledger_for(clean_redis.url)
    failed = run_cli("sweep", "--alphas", "1.0", "0.1", "--fail-rate", "1", "--json", env=cli_env)
    assert failed.returncode == 1, failed.stderr
    run_id = json.loads(failed.stdout)["run_id"]

    refused = run_cli("restart", run_id, "--fail-rate", "2", env=cli_env)
    assert refused.returncode == 2 and "fail rate 2.0 is outside 0..1" in refused.stderr
    assert ledger.get_run(run_id)["params"]["fail_rate"] == 1.0 and ledger.get_run(run_id)["state"] == "Failed"

    restarted = run_cli("restart", run_id, "--fail-rate", "0", "--retries", "2", "--retry-delay", "0.5",
                        "--json", env=cli_env)
    assert restarted.returncode == 0, restarted.stderr
    doc = json.loads(restarted.stdout)
    assert doc["state"] == "Success" and (doc["failed"], doc["blocked"]) == ([], 0)
    assert doc["results"] == {"1.0": tutorial_score(17, 100, 1.0), "0.1": tutorial_score(17, 100, 0.1)}
    params = ledger.get_run(run_id)["params"]
    assert (params["fail_rate"], params["retries"], params["retry_delay"]) == (0.0, 2, 0.5)
    rows = {r["key"]: r for r in ledger.tasks(run_id, flow.task_keys(2))}
    assert rows["train_model[0]"]["attempts"] == rows["train_model[1]"]["attempts"] == 2
    assert rows["download_dataset"]["attempts"] == 1
    status = json.loads(run_cli("status", run_id, "--json", env=cli_env).stdout)
    assert status["params"]["fail_rate"] == 0.0
