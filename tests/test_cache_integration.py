"""The stage cache through a real Redis and real workers: hits, misses, widening, damage, code
changes, two runs at once, restart, the schedule's choice, and the CLI's refusals."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import pipeline_env, poll, run_cli, start_worker, stop_process
from pipeline.cache.store import CacheStore
from pipeline.cli.common import EXIT_BAD_INPUT, EXIT_FAILED
from pipeline.definition import flow
from test_stages import tutorial_score
from test_versioning import copy_project, edit

CACHEABLE = ("download_dataset", "preprocess_dataset", "train_model", "evaluate_model")


def sweep(env: dict, *args: str, cli: str | None = None) -> dict:
    result = run_cli("sweep", *args, "--json", env=env) if cli is None else _run(cli, env, "sweep", *args, "--json")
    assert result.returncode in (0, EXIT_FAILED), result.stderr
    return json.loads(result.stdout)


def _run(cli: str, env: dict, *args: str):
    import subprocess

    return subprocess.run([sys.executable, cli, *args], env=env, capture_output=True, text=True, timeout=180)


def status(env: dict, run_id: str) -> dict[str, dict]:
    result = run_cli("status", run_id, "--json", env=env)
    assert result.returncode in (0, EXIT_FAILED), result.stderr
    return {t["key"]: t for t in json.loads(result.stdout)["tasks"]}


def states(tasks: dict[str, dict]) -> dict[str, str]:
    return {key: t["state"] for key, t in tasks.items() if flow.stage_of(key) in CACHEABLE}


def expected(alphas) -> dict[str, float]:
    return {str(float(a)): tutorial_score(17, 100, float(a)) for a in alphas}


def logs(env: dict, run_id: str) -> str:
    result = run_cli("logs", run_id, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_second_run_comes_from_the_cache_and_a_wider_one_computes_only_what_is_new(cli_env, clean_redis):
    first = sweep(cli_env, "--alphas", "1.0", "0.1", "--cache")
    assert first["state"] == "Success" and first["results"] == expected(["1.0", "0.1"])
    assert set(states(status(cli_env, first["run_id"])).values()) == {"Success"}

    second = sweep(cli_env, "--alphas", "1.0", "0.1", "--cache")
    assert second["state"] == "Success" and second["results"] == first["results"]
    tasks = status(cli_env, second["run_id"])
    assert set(states(tasks).values()) == {"Cached"}, tasks
    assert {t["cached_from"]["run_id"] for k, t in tasks.items() if t["state"] == "Cached"} == {first["run_id"]}
    assert all(t["state"] == "Success" and t["cached_from"] is None for k, t in tasks.items() if k.startswith("cleanup"))
    text = logs(cli_env, second["run_id"])
    assert "train_model begin" not in text and "evaluate_model begin" not in text and "cache hit: key" in text
    run_dir = Path(second["artifacts"])  # the cached files arrived and were cleaned up as computed ones
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        f"eval_model_{a}_train_dataset.txt" for a in ("1.0", "0.1"))
    for a in ("1.0", "0.1"):
        name = f"eval_model_{a}_train_dataset.txt"
        assert (run_dir / name).read_bytes() == (Path(first["artifacts"]) / name).read_bytes()

    wider = sweep(cli_env, "--alphas", "1.0", "0.1", "0.01", "--cache")
    assert wider["state"] == "Success" and wider["results"] == expected(["1.0", "0.1", "0.01"])
    assert states(status(cli_env, wider["run_id"])) == {
        "download_dataset": "Cached", "preprocess_dataset": "Cached", "train_model[0]": "Cached",
        "evaluate_model[0]": "Cached", "train_model[1]": "Cached", "evaluate_model[1]": "Cached",
        "train_model[2]": "Success", "evaluate_model[2]": "Success"}

    plain = sweep(cli_env, "--alphas", "1.0", "0.1")  # without --cache nothing changes
    assert set(states(status(cli_env, plain["run_id"])).values()) == {"Success"}
    assert "cache" not in logs(cli_env, plain["run_id"])

    store = CacheStore(Path(first["artifacts"]).parent)
    before = {e.key: e.created for e in store.entries()}
    assert len(before) == 2 + 2 * 3
    refreshed = sweep(cli_env, "--alphas", "1.0", "0.1", "--refresh-cache")
    assert set(states(status(cli_env, refreshed["run_id"])).values()) == {"Success"}
    after = {e.key: (e.created, e.run_id) for e in store.entries()}
    rewritten = [k for k, (created, run_id) in after.items() if run_id == refreshed["run_id"]]
    assert len(rewritten) == 6 and all(after[k][0] > before[k] for k in rewritten)


def test_a_damaged_entry_is_recomputed_never_served(cli_env, clean_redis):
    first = sweep(cli_env, "--alphas", "1.0", "0.1", "--cache")
    store = CacheStore(Path(first["artifacts"]).parent)
    by_task = {e.task: e for e in store.entries()}
    model = by_task["train_model[0]"].files
    [record] = model.values()
    blob = Path(store.location) / "blobs" / record["sha256"]
    blob.write_bytes(blob.read_bytes()[:-10])  # truncated
    (Path(store.location) / "entries" / f"{by_task['evaluate_model[1]'].key}.json").write_text("{not json")

    second = sweep(cli_env, "--alphas", "1.0", "0.1", "--cache")
    assert second["state"] == "Success" and second["results"] == expected(["1.0", "0.1"])
    got = states(status(cli_env, second["run_id"]))
    assert got["train_model[0]"] == "Success" and got["evaluate_model[1]"] == "Success", got
    assert got["train_model[1]"] == "Cached" and got["download_dataset"] == "Cached", got
    assert "is damaged" in logs(cli_env, second["run_id"])
    third = sweep(cli_env, "--alphas", "1.0", "0.1", "--cache")  # stored again, whole
    assert set(states(status(cli_env, third["run_id"])).values()) == {"Cached"}


def test_a_change_of_a_stage_or_of_its_helpers_misses(clean_redis, tmp_path):
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "artifacts"))
    label = "cache-code"
    workers = []
    try:
        workers.append(start_worker(clean_redis.url, tmp_path / "w0.log", "--label", label, "--pool", "threads",
                                    env=env))
        sweep(env, "--alphas", "1.0", "--label", label, "--cache")
        again = sweep(env, "--alphas", "1.0", "--label", label, "--cache")
        assert set(states(status(env, again["run_id"])).values()) == {"Cached"}
        stop_process(workers.pop().proc)

        helper = copy_project(tmp_path / "helper")  # the task wrapper, outside the flow version's digest
        edit(helper / "pipeline" / "worker" / "tasks.py", "return stages.train_model(",
             "p = dict(p)\n    return stages.train_model(")
        workers.append(start_worker(clean_redis.url, tmp_path / "w1.log", "--label", label, "--pool", "threads",
                                    env=env, cwd=helper, command=(sys.executable, str(helper / "cli.py"), "worker")))
        changed = sweep(env, "--alphas", "1.0", "--label", label, "--cache")
        assert changed["results"] == expected(["1.0"])
        assert set(states(status(env, changed["run_id"])).values()) == {"Success"}
        stop_process(workers.pop().proc)

        stage = copy_project(tmp_path / "stage")  # a stage's code: a new flow version, submitted from the copy
        edit(stage / "pipeline" / "definition" / "stages.py", "SPLIT_SEED = 23", "SPLIT_SEED = 23 + 0")
        workers.append(start_worker(clean_redis.url, tmp_path / "w2.log", "--label", label, "--pool", "threads",
                                    env=env, cwd=stage, command=(sys.executable, str(stage / "cli.py"), "worker")))
        other = sweep(env, "--alphas", "1.0", "--label", label, "--cache", cli=str(stage / "cli.py"))
        assert other["state"] == "Success" and other["results"] == expected(["1.0"])
        assert set(states(status(env, other["run_id"])).values()) == {"Success"}
    finally:
        for w in workers:
            stop_process(w.proc)
    book = clean_redis.client()  # the next test must not see this test's workers as live
    poll(lambda: not [k for k in book.scan_iter("pipeline:workers:*") if label in (book.get(k) or "")],
         "the stopped workers' records to be gone", 20)


def test_two_runs_filling_the_same_keys_at_once_store_one_valid_entry_each(cli_env, clean_redis):
    sent = [run_cli("sweep", "--alphas", "1.0", "0.1", "--cache", "--no-wait", "--json", env=cli_env) for _ in range(2)]
    ids = [json.loads(s.stdout)["run_id"] for s in sent]
    for run_id in ids:
        waited = run_cli("wait", run_id, "--json", env=cli_env)
        assert waited.returncode == 0 and json.loads(waited.stdout)["results"] == expected(["1.0", "0.1"])
    root = Path(json.loads(sent[0].stdout)["artifacts"]).parent
    entries = CacheStore(root).entries()
    assert len(entries) == 6 and len({e.key for e in entries}) == 6
    for entry in entries:
        CacheStore(root).get(entry.key)  # every one whole and valid
    third = sweep(cli_env, "--alphas", "1.0", "0.1", "--cache")
    assert set(states(status(cli_env, third["run_id"])).values()) == {"Cached"}


def test_restart_of_a_failed_cached_run(cli_env, clean_redis):
    sweep(cli_env, "--alphas", "1.0", "--cache")
    failed = sweep(cli_env, "--alphas", "1.0", "0.5", "--cache", "--fail-rate", "1")
    assert failed["state"] == "Failed"
    got = states(status(cli_env, failed["run_id"]))
    assert got == {"download_dataset": "Cached", "preprocess_dataset": "Cached", "train_model[0]": "Cached",
                   "evaluate_model[0]": "Cached", "train_model[1]": "Failed", "evaluate_model[1]": "TriggerFailed"}
    restarted = run_cli("restart", failed["run_id"], "--fail-rate", "0", "--json", env=cli_env)
    assert restarted.returncode == 0, restarted.stderr
    doc = json.loads(restarted.stdout)
    assert doc["state"] == "Success" and doc["results"] == expected(["1.0", "0.5"])
    tasks = status(cli_env, failed["run_id"])
    assert states(tasks) == {**got, "train_model[1]": "Success", "evaluate_model[1]": "Success"}
    assert tasks["train_model[1]"]["attempts"] == 2 and tasks["download_dataset"]["attempts"] == 1
    assert tasks["train_model[1]"]["cached_from"] is None

    # after a success only the eval files are left: --from must start at the download
    served = run_cli("restart", failed["run_id"], "--from", "download_dataset", "--json", env=cli_env)
    assert served.returncode == 0, served.stderr  # the run asked for the cache: every entry serves again
    assert set(states(status(cli_env, failed["run_id"])).values()) == {"Cached"}
    fresh = run_cli("restart", failed["run_id"], "--from", "download_dataset", "--refresh-cache", "--json",
                    env=cli_env)
    assert fresh.returncode == 0 and json.loads(fresh.stdout)["results"] == expected(["1.0", "0.5"]), fresh.stderr
    tasks = status(cli_env, failed["run_id"])
    assert set(states(tasks).values()) == {"Success"}
    assert tasks["train_model[1]"]["attempts"] == 4 and tasks["download_dataset"]["attempts"] == 3


def test_scheduled_and_backfilled_runs_take_the_schedule_setting(cli_env, clean_redis):
    minute = (datetime.now(timezone.utc) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M")
    env = {**cli_env, "PIPELINE_SCHEDULE_CACHE": "on"}
    filled = run_cli("backfill", "--start", minute, "--end", minute, "--alphas", "1.0", "--json", env=env)
    assert filled.returncode == 0, filled.stderr
    [run_id] = json.loads(filled.stdout)["created_runs"]
    assert run_cli("wait", run_id, env=env).returncode == 0
    shown = run_cli("status", run_id, "--json", env=env)
    assert json.loads(shown.stdout)["params"]["cache"] == "on"
    root = Path(cli_env["PIPELINE_ARTIFACTS"])
    assert {e.task for e in CacheStore(root).entries() if e.run_id == run_id} == {
        "download_dataset", "preprocess_dataset", "train_model[0]", "evaluate_model[0]"}
    bad = run_cli("backfill", "--start", minute, "--end", minute, env={**cli_env, "PIPELINE_SCHEDULE_CACHE": "yes"})
    assert bad.returncode == EXIT_BAD_INPUT and "PIPELINE_SCHEDULE_CACHE='yes'" in bad.stderr.strip()


def test_cache_flags_refused_together_or_with_local(cli_env, clean_redis):
    both = run_cli("sweep", "--cache", "--refresh-cache", env=cli_env)
    assert both.returncode == EXIT_BAD_INPUT and "exclude each other" in both.stderr
    local = run_cli("run", "--local", "--cache", env=cli_env)
    assert local.returncode == EXIT_BAD_INPUT and "--local does not use the cache" in local.stderr
    assert clean_redis.client().zcard("pipeline:runs") == 0


def test_cache_ls_and_prune(cli_env, clean_redis):
    sweep(cli_env, "--alphas", "1.0", "--cache")
    listed = run_cli("cache", "ls", "--json", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    assert sorted(e["stage"] for e in json.loads(listed.stdout)) == sorted(CACHEABLE)
    kept = run_cli("cache", "prune", "--older-than", "1h", "--json", env=cli_env)
    assert kept.returncode == 0 and json.loads(kept.stdout)["entries_kept"] == 4
    bad = run_cli("cache", "prune", "--max-size", "lots", env=cli_env)
    assert bad.returncode == EXIT_BAD_INPUT and "'lots'" in bad.stderr
    pruned = run_cli("cache", "prune", "--max-size", "0", "--json", env=cli_env)
    assert json.loads(pruned.stdout)["entries_kept"] == 0
    assert json.loads(run_cli("cache", "ls", "--json", env=cli_env).stdout) == []
