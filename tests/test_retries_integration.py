"""Retries through a real redis-server and worker: they recover, wait as Retrying, hold no slot."""
from __future__ import annotations

import json

import pytest

from conftest import poll, run_cli
from pipeline.definition import flow
from test_stages import tutorial_score
from test_sweep_integration import SIX, ledger_for


def test_retries_recover_from_injected_failures(cli_env, clean_redis):
    ledger = ledger_for(clean_redis.url)
    for _ in range(8):
        result = run_cli("sweep", "--alphas", *SIX, "--fail-rate", "0.5", "--retries", "10",
                         "--retry-delay", "0.2", "--json", env=cli_env)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["state"] == "Success"
        assert doc["results"] == {str(float(a)): tutorial_score(17, 100, float(a)) for a in SIX}
        rows = ledger.tasks(doc["run_id"], flow.task_keys(6))
        assert all(r["state"] == "Success" for r in rows)
        trains = [r["attempts"] for r in rows if r["key"].startswith(flow.TRAIN)]
        assert all(r["attempts"] == 1 for r in rows if not r["key"].startswith(flow.TRAIN))
        if max(trains) > 1:
            break
    else:
        pytest.fail("no train_model attempt failed in eight sweeps at --fail-rate 0.5")


def test_waiting_retries_are_retrying_and_hold_no_worker_slot(cli_env, clean_redis):
    """Eleven retries wait at once on a worker with ten slots; another run still goes through."""
    ledger = ledger_for(clean_redis.url)
    alphas = [str(float(i)) for i in range(1, 12)]
    sent = run_cli("sweep", "--alphas", *alphas, "--fail-rate", "1", "--retries", "1", "--retry-delay", "30",
                   "--no-wait", env=cli_env)
    assert sent.returncode == 0, sent.stderr
    run_id = sent.stdout.strip()
    trains = [flow.train_key(i) for i in range(len(alphas))]

    def all_retrying() -> bool:
        states = ledger.task_states(run_id)
        return all(states[k] == "Retrying" for k in trains)

    poll(all_retrying, "every train_model to wait for its retry")
    rows = ledger.tasks(run_id, trains)
    assert all(r["attempts"] == 1 and "InjectedFailure" in r["error"] for r in rows)

    other = run_cli("run", "--json", env=cli_env)
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["results"] == {"linear": tutorial_score(17, 100, None)}
    assert all_retrying(), "the other run finished only after the retries' countdown"

    cancelled = run_cli("cancel", run_id, env=cli_env)  # no need to wait for the second failures
    assert cancelled.returncode == 0, cancelled.stderr
    assert ledger.get_run(run_id)["state"] == "Cancelled"
