"""restart through the CLI, a real redis-server and a real worker (section 2 of the design)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from conftest import poll, run_cli
from pipeline.definition import flow
from pipeline.runs.submit import RunRequest
from test_stages import tutorial_score
from test_sweep_integration import SIX, ledger_for

MAX_RESTARTS = 30


def mtimes(run_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}


def eval_names(alphas) -> list[str]:
    return sorted(f"eval_model_{float(a)}_train_dataset.txt" for a in alphas)


def test_fail_rate_sweep_restarted_until_success_reruns_only_what_failed(cli_env, clean_redis):
    ledger = ledger_for(clean_redis.url)
    for _ in range(10):
        first = run_cli("sweep", "--alphas", *SIX, "--fail-rate", "0.5", "--json", env=cli_env)
        if first.returncode == 1:
            break
        assert first.returncode == 0, first.stderr
    else:
        pytest.fail("ten sweeps at --fail-rate 0.5 never failed")
    doc = json.loads(first.stdout)
    run_id, run_dir = doc["run_id"], Path(doc["artifacts"])
    keys = flow.task_keys(6)
    rows = {r["key"]: r for r in ledger.tasks(run_id, keys)}
    never_failed = [i for i in range(6) if rows[flow.train_key(i)]["state"] == "Success"]
    assert len(never_failed) < 6
    expected_attempts = {k: 1 for k in keys if rows[k]["state"] in ("Success", "Failed")}
    seen = mtimes(run_dir)  # dataset, train/test, and the model and eval of every branch that succeeded
    assert {"dataset.csv", "train_dataset.csv", "test_dataset.csv"} <= set(seen)

    for restarts in range(1, MAX_RESTARTS + 1):
        for key in keys:
            if rows[key]["state"] == "Failed":
                expected_attempts[key] = expected_attempts.get(key, 0) + 1
        result = run_cli("restart", run_id, "--json", env=cli_env)
        assert result.returncode in (0, 1), result.stderr
        rows = {r["key"]: r for r in ledger.tasks(run_id, keys)}
        if result.returncode == 0:
            break
        now = mtimes(run_dir)
        assert {name: now[name] for name in seen} == seen  # nothing that existed was rewritten
        seen.update(now)
    else:
        pytest.fail(f"still failing after {MAX_RESTARTS} restarts")

    doc = json.loads(result.stdout)
    assert doc["run_id"] == run_id and doc["state"] == "Success"
    assert doc["results"] == {str(float(a)): tutorial_score(17, 100, float(a)) for a in SIX}
    assert sorted(p.name for p in run_dir.iterdir()) == eval_names(SIX)
    assert {name: seen[name] for name in eval_names(SIX) if name in seen} == {
        name: mtime for name, mtime in mtimes(run_dir).items() if name in seen}
    assert ledger.get_run(run_id)["restarts"] == str(restarts)
    for key in keys:
        assert rows[key]["state"] == "Success", rows[key]
        want = expected_attempts.get(key, 1)  # TriggerFailed tasks ran once, when they could
        assert rows[key]["attempts"] == want, (key, rows[key]["attempts"], want)
        # every attempt before the last failed, and the run record keeps each for the timeline
        history = rows[key]["history"]
        assert [a["attempt"] for a in history] == list(range(1, want)), (key, history)
        assert all(a["state"] == "Failed" and "InjectedFailure" in a["error"] for a in history), history
        assert all(a["started"] <= a["ended"] <= rows[key]["started"] for a in history), (key, history)
        assert rows[key]["error"] is None, rows[key]
    for i in never_failed:
        assert rows[flow.train_key(i)]["attempts"] == rows[flow.evaluate_key(i)]["attempts"] == 1
    assert rows[flow.DOWNLOAD]["attempts"] == rows[flow.PREPROCESS]["attempts"] == 1


def test_failed_cleanup_is_shown_run_succeeds_restart_reruns_only_it(cli_env, clean_redis):
    ledger = ledger_for(clean_redis.url)
    sent = run_cli("sweep", "--alphas", "1.0", "0.1", "--sleep", "0.5", "--no-wait", "--json", env=cli_env)
    assert sent.returncode == 0, sent.stderr
    run_id, run_dir = json.loads(sent.stdout)["run_id"], Path(json.loads(sent.stdout)["artifacts"])
    poll(lambda: ledger.task_states(run_id).get(flow.PREPROCESS) == "Success", "preprocess to succeed")
    # dataset.csv is read by nobody after preprocess; make its cleanup fail (unlink of a directory)
    blocker = run_dir / "dataset.csv"
    blocker.unlink()
    blocker.mkdir()
    (blocker / "keep").write_text("x")

    waited = run_cli("wait", run_id, "--json", env=cli_env)
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["state"] == "Success"
    rows = {r["key"]: r for r in ledger.tasks(run_id, flow.task_keys(2))}
    assert rows["cleanup_file[0]"]["state"] == "Failed"
    assert "IsADirectoryError" in rows["cleanup_file[0]"]["error"]
    assert all(r["state"] == "Success" for k, r in rows.items() if k != "cleanup_file[0]")

    shutil.rmtree(blocker)
    before = mtimes(run_dir)
    restarted = run_cli("restart", run_id, "--no-wait", "--json", env=cli_env)
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["restarted"] == ["cleanup_file[0]"]
    waited = run_cli("wait", run_id, "--json", env=cli_env)
    assert waited.returncode == 0, waited.stderr
    doc = json.loads(waited.stdout)
    assert doc["results"] == {"1.0": tutorial_score(17, 100, 1.0), "0.1": tutorial_score(17, 100, 0.1)}
    rows = {r["key"]: r for r in ledger.tasks(run_id, flow.task_keys(2))}
    assert rows["cleanup_file[0]"]["state"] == "Success" and rows["cleanup_file[0]"]["attempts"] == 2
    assert all(r["attempts"] == 1 for k, r in rows.items() if k != "cleanup_file[0]")
    assert mtimes(run_dir) == before and sorted(before) == eval_names([1.0, 0.1])

    again = run_cli("restart", run_id, env=cli_env)
    assert again.returncode == 2 and "nothing to restart" in again.stderr


def test_restart_refusals(cli_env, clean_redis):
    done = run_cli("run", "--json", env=cli_env)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    for args, message in [
        ((run_id,), f"every task of run {run_id} succeeded: nothing to restart"),
        (("20260101T000000Z-abcdef",), "no run '20260101T000000Z-abcdef'"),
        (("../etc",), "invalid run id '../etc'"),
    ]:
        result = run_cli("restart", *args, env=cli_env)
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "restarts" not in ledger_for(clean_redis.url).get_run(run_id)


def test_stuck_run_is_refused_until_stuck_then_rerun(cli_env, clean_redis, tmp_path):
    """A run recorded whose messages were lost: Pending forever, restartable once stuck."""
    ledger = ledger_for(clean_redis.url)
    run_id = "20260101T000000Z-0057ac"
    root = Path(cli_env["PIPELINE_ARTIFACTS"])
    request = RunRequest(alphas=[1.0, 0.1], artifacts_root=root)
    fields = {"id": run_id, "flow": flow.FLOW_NAME, "version": 1, "params": request.params(), "label": "",
              "queue": request.queue, "scheduled_start": "", "state": "Pending", "artifacts": str(root),
              "submitted": 1, "cancelled": 0}
    assert ledger.create_run(run_id, fields, flow.task_keys(2))

    early = run_cli("restart", run_id, env=cli_env)
    assert early.returncode == 2 and f"run {run_id} is pending: wait for it" in early.stderr

    ledger.update_run(run_id, updated=repr(time.time() - 301))  # no progress for longer than stuck_after
    result = run_cli("restart", run_id, "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["state"] == "Success"
    assert doc["results"] == {"1.0": tutorial_score(17, 100, 1.0), "0.1": tutorial_score(17, 100, 0.1)}
    assert all(r["attempts"] == 1 for r in ledger.tasks(run_id, flow.task_keys(2)))
    assert sorted(p.name for p in (root / run_id).iterdir()) == eval_names([1.0, 0.1])
