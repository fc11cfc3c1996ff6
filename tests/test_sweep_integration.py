"""run and sweep through a real redis-server and a real worker subprocess (no eager mode)."""
from __future__ import annotations

import json
from pathlib import Path


from conftest import run_cli
from pipeline.definition import flow
from pipeline.ledger.records import Ledger
from test_stages import tutorial_score

SIX = ["1.0", "0.1", "0.01", "0.001", "0.0001", "0.00001"]


def ledger_for(url: str) -> Ledger:
    from pipeline.redis_conn import make_client

    return Ledger(make_client(url), 3600)


def test_linear_run(cli_env, clean_redis, tmp_path):
    result = run_cli("run", "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["state"] == "Success"
    run_dir = Path(doc["artifacts"])
    assert run_dir.parent == tmp_path / "artifacts"
    assert sorted(p.name for p in run_dir.iterdir()) == ["eval_model_train_dataset.txt"]
    assert (run_dir / "eval_model_train_dataset.txt").read_text().strip() == "9.655153179853411816e-01"
    assert doc["results"] == {"linear": tutorial_score(17, 100, None)}


def test_six_alpha_sweep_values_files_and_record(cli_env, clean_redis):
    result = run_cli("sweep", "--alphas", *SIX, "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    expected = {str(float(a)): tutorial_score(17, 100, float(a)) for a in SIX}
    assert doc["results"] == expected
    run_dir = Path(doc["artifacts"])
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        f"eval_model_{str(float(a))}_train_dataset.txt" for a in SIX)
    for a in SIX:
        text = (run_dir / f"eval_model_{float(a)}_train_dataset.txt").read_text()
        assert float(text) == expected[str(float(a))]
    assert not list((run_dir.parent / ".tmp").iterdir())

    ledger = ledger_for(clean_redis.url)
    run = ledger.get_run(doc["run_id"])
    assert run["state"] == "Success" and run["remaining"] == "0" and run["ntasks"] == str(2 + 12 + 9)
    assert run["params"]["alphas"] == [float(a) for a in SIX]
    for row in ledger.tasks(doc["run_id"], flow.task_keys(6)):
        assert row["state"] == "Success", row
        assert row["attempts"] == 1, row
        assert row["started"] <= row["ended"], row
        assert row["output"] is not None, row


def test_table_output_and_default_alphas(cli_env):
    result = run_cli("sweep", "--n-samples", "200", env=cli_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run ") and ": Success" in lines[0]
    rows = {line.split()[0]: line.split()[1] for line in lines[3:]}
    # the table shows 6 decimals; --json and the eval files keep every digit
    assert rows == {str(float(a)): f"{tutorial_score(17, 200, float(a)):.6f}" for a in SIX}


def test_failed_branch_triggers_downstream_and_exit_1(cli_env, clean_redis):
    result = run_cli("sweep", "--alphas", "1.0", "0.5", "--fail-rate", "1", "--json", env=cli_env)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["state"] == "Failed" and doc["results"] == {}
    states = ledger_for(clean_redis.url).task_states(doc["run_id"])
    assert states[flow.train_key(0)] == states[flow.train_key(1)] == "Failed"
    assert states[flow.evaluate_key(0)] == "TriggerFailed"
    assert all(states[flow.cleanup_key(j)] == "TriggerFailed" for j in range(5))
    run_dir = Path(doc["artifacts"])
    assert sorted(p.name for p in run_dir.iterdir()) == ["dataset.csv", "test_dataset.csv", "train_dataset.csv"]
