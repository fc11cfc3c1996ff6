"""Retries through a real redis-server and worker: they recover, wait as Retrying, hold no slot."""
from __future__ import annotations

import json

import pytest

from conftest import poll, run_cli
from pipeline.definition import flow
from test_stages import tutorial_score
from test_sweep_integration import SIX, ledger_for


def test_retries_recover_from_injected_failures(cli_env, clean_redis):
    """Six trains at fail rate 0.5 with ten retries: each train succeeds after its failed
    attempts, or fails for good after exactly eleven (one sweep in about 340: then the run is
    Failed, which is right, and the next sweep is tried). Every outcome is checked, so chance
    cannot fail the test; eight sweeps without one recovered retry (about 1e-14) would."""
    ledger = ledger_for(clean_redis.url)
    retries = 10
    for _ in range(8):
        result = run_cli("sweep", "--alphas", *SIX, "--fail-rate", "0.5", "--retries", str(retries),
                         "--retry-delay", "0.2", "--json", env=cli_env)
        assert result.returncode in (0, 1), result.stderr
        doc = json.loads(result.stdout)
        rows = {r["key"]: r for r in ledger.tasks(doc["run_id"], flow.task_keys(6))}
        trains = {k: r for k, r in rows.items() if k.startswith(flow.TRAIN)}
        assert all(r["attempts"] == 1 for k, r in rows.items() if k not in trains and r["state"] == "Success")
        exhausted = [k for k, r in trains.items() if r["state"] == "Failed"]
        assert all(trains[k]["attempts"] == retries + 1 and "InjectedFailure" in trains[k]["error"]
                   for k in exhausted), trains
        assert all(r["state"] == "Success" for k, r in trains.items() if k not in exhausted), trains
        if exhausted:  # every attempt of a train failed: the run is Failed, nothing else is wrong
            assert result.returncode == 1 and doc["state"] == "Failed", doc
            continue
        assert result.returncode == 0 and doc["state"] == "Success", doc
        assert all(r["state"] == "Success" for r in rows.values())
        assert doc["results"] == {str(float(a)): tutorial_score(17, 100, float(a)) for a in SIX}
        if max(r["attempts"] for r in trains.values()) > 1:
            break
    else:
        pytest.fail("no sweep of eight at --fail-rate 0.5 recovered a failed train_model attempt")


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
