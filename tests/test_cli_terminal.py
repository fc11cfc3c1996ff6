"""The terminal's smaller promises: help with no command, ``wait --timeout``, ``runs``
filters, a ``--local`` run that fails, and its plain word about not being recorded.

Against a real redis-server (the CLI only reads the record: no worker needed for these).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys

from conftest import CLI, ROOT, pipeline_env, poll, recorded_run, run_cli
from test_sweep_integration import ledger_for


def test_no_command_prints_the_help_and_exits_0(tmp_path):
    result = run_cli(env=pipeline_env("redis://127.0.0.1:1/0"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: cli.py [OPTIONS] COMMAND")
    assert "sweep" in result.stdout and result.stderr == ""


def test_wait_timeout_exits_124_and_the_run_goes_on(clean_redis):
    book = recorded_run(clean_redis.url, "never-ends")  # recorded, never sent: it cannot end
    result = run_cli("wait", "never-ends", "--timeout", "0.5", env=pipeline_env(clean_redis.url))
    assert result.returncode == 124, result.stderr
    assert "run never-ends has not ended after 0.5 s (Pending)" in result.stderr
    assert "python cli.py wait never-ends" in result.stderr
    assert book.get_run("never-ends")["state"] == "Pending"
    as_json = run_cli("wait", "never-ends", "--timeout", "0", "--json", env=pipeline_env(clean_redis.url))
    assert as_json.returncode == 124
    assert json.loads(as_json.stdout) == {"run_id": "never-ends", "state": "Pending", "timed_out": True}


def test_wait_timeout_refuses_a_negative_value(clean_redis):
    recorded_run(clean_redis.url, "r1")
    result = run_cli("wait", "r1", "--timeout", "-1", env=pipeline_env(clean_redis.url))
    assert result.returncode == 2 and "timeout -1.0" in result.stderr


def test_a_failing_local_run_names_the_task_and_says_it_is_not_recorded(tmp_path):
    env = pipeline_env("redis://127.0.0.1:1/0")  # unreachable: --local must not need it
    result = run_cli("sweep", "--local", "--alphas", "1.0", "0.1", "--fail-rate", "1", "--json",
                     "--artifacts", str(tmp_path / "a"), env=env)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["state"] == "Failed" and doc["recorded"] is False and doc["results"] == {}
    assert doc["failed"] == [{"key": "train_model[0]", "alpha": "1.0",
                              "error": "InjectedFailure: injected failure (fail rate 1.0)"}]
    assert doc["blocked"] == 8  # of 11 tasks: download, preprocess ran; train_model[0] failed
    assert "not recorded" in result.stderr
    text = run_cli("run", "--local", "--artifacts", str(tmp_path / "a"), env=env)
    assert text.returncode == 0, text.stderr
    assert ": Success; artifacts in " in text.stdout and "not recorded" in text.stderr


def test_runs_filters_by_state_and_label_newest_first_up_to_limit(clean_redis):
    import time

    from pipeline.definition import flow
    from pipeline.ledger.records import Ledger
    from pipeline.redis_conn import make_client

    book = Ledger(make_client(clean_redis.url), 3600)
    made = [("r-old-failed-gpu", "Failed", "gpu"), ("r-success-gpu", "Success", "gpu"),
            ("r-failed-none", "Failed", ""), ("r-new-failed-gpu", "Failed", "gpu")]
    for run_id, state, label in made:
        assert book.create_run(run_id, {"id": run_id, "params": {"alphas": [1.0]}, "state": state, "label": label,
                                        "queue": label or "default", "version": 1}, flow.task_keys(1))
        time.sleep(0.01)  # the index orders by creation time
    env = pipeline_env(clean_redis.url)

    def ids(*args: str) -> list[str]:
        result = run_cli("runs", *args, "--json", env=env)
        assert result.returncode == 0, result.stderr
        return [doc["run_id"] for doc in json.loads(result.stdout)]

    assert ids() == ["r-new-failed-gpu", "r-failed-none", "r-success-gpu", "r-old-failed-gpu"]
    assert ids("--state", "Failed") == ["r-new-failed-gpu", "r-failed-none", "r-old-failed-gpu"]
    assert ids("--state", "failed", "--label", "gpu") == ["r-new-failed-gpu", "r-old-failed-gpu"]
    assert ids("--state", "Failed", "--label", "gpu", "--limit", "1") == ["r-new-failed-gpu"]
    assert ids("--label", "gpu", "--state", "Success") == ["r-success-gpu"]
    assert ids("--state", "Cancelled") == []
    assert run_cli("runs", "--state", "Cancelled", env=env).stdout.strip() == "no runs match those filters"
    bad = run_cli("runs", "--state", "Exploded", env=env)
    assert bad.returncode == 2 and "unknown state 'Exploded'" in bad.stderr


def test_ctrl_c_on_a_waiting_sweep_exits_130_and_the_run_goes_on(cli_env, clean_redis, tmp_path):
    """SIGINT (Ctrl-C) while ``sweep`` waits: exit 130 with the command that waits again; the
    run, already queued, still ends Success on the worker."""
    ledger = ledger_for(clean_redis.url)
    stderr = tmp_path / "stderr"
    with open(stderr, "w") as err_file:
        sweep = subprocess.Popen([sys.executable, CLI, "sweep", "--alphas", "1.0", "0.1", "--sleep", "1"], cwd=ROOT,
                                 env=cli_env, stdout=subprocess.DEVNULL, stderr=err_file, text=True)
    try:
        # waiting: the submission line and the one saying where to look are out, a task runs
        poll(lambda: len(stderr.read_text().splitlines()) >= 2, "the sweep to say where to look", 60)
        run_id = ledger.r.zrange(ledger.runs_index, 0, -1)[0]
        poll(lambda: "Running" in ledger.task_states(run_id).values(), "a task of the run to start", 60)
        sweep.send_signal(signal.SIGINT)
        sweep.wait(30)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    err = stderr.read_text()
    assert sweep.returncode == 130, err
    assert f"run {run_id} goes on: python cli.py wait {run_id}" in err, err
    assert ledger.get_run(run_id)["state"] not in ("Success", "Failed")  # interrupted before the end
    waited = run_cli("wait", run_id, "--json", env=cli_env)
    assert waited.returncode == 0 and json.loads(waited.stdout)["state"] == "Success", waited.stderr
