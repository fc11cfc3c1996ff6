"""Log lines keep their task key when many tasks print at once in one threads-pool worker."""
from __future__ import annotations

import json

from conftest import pipeline_env, run_cli, start_worker, stop_process
from pipeline.definition import flow
from pipeline.ledger.records import Ledger
from pipeline.redis_conn import make_client

N_ALPHAS = 16
QUEUE = "crowd"


def overlapping_pairs(rows: list[dict]) -> int:
    """How many pairs of tasks ran at the same time."""
    spans = sorted((r["started"], r["ended"]) for r in rows)
    return sum(1 for i, (s1, e1) in enumerate(spans) for s2, e2 in spans[i + 1:] if s2 < e1)


def test_concurrent_prints_in_one_threads_worker_keep_their_task_key(clean_redis, tmp_path):
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "artifacts"))
    crowd = start_worker(clean_redis.url, tmp_path / "crowd.log", "--pool", "threads", "--concurrency", "8",
                         "--label", QUEUE, env=env)
    try:
        alphas = [f"{0.1 * (i + 1):.1f}" for i in range(N_ALPHAS)]
        result = run_cli("sweep", "--alphas", *alphas, "--sleep", "0.2", "--label", QUEUE, "--json", env=env)
        assert result.returncode == 0, result.stderr
        run_id = json.loads(result.stdout)["run_id"]
    finally:
        stop_process(crowd.proc)

    ledger = Ledger(make_client(clean_redis.url), 3600)
    keys = flow.task_keys(N_ALPHAS)
    assert overlapping_pairs(ledger.tasks(run_id, keys)) >= N_ALPHAS  # the test only means something if they did

    printed: dict[str, list[str]] = {}
    for _, fields in ledger.read_logs(run_id):
        printed.setdefault(fields["task"], []).append(fields["line"])
    assert sorted(printed) == sorted(keys)
    for key, lines in printed.items():
        stage = key.split("[")[0]
        assert lines == [f"{stage} begin", f"{stage} end"], (key, lines)

    worker_log = crowd.text()
    for stage, count in ((flow.TRAIN, N_ALPHAS), (flow.EVALUATE, N_ALPHAS), (flow.CLEANUP, N_ALPHAS + 3)):
        assert worker_log.count(f": {stage} begin\n") == count, stage
        assert worker_log.count(f": {stage} end\n") == count, stage
    for key in keys:  # the worker's own log names each line's run and task too, threads or not
        stage = key.split("[")[0]
        assert worker_log.count(f"] {run_id} {key}: {stage} begin\n") == 1, key
        assert worker_log.count(f"] {run_id} {key}: {stage} end\n") == 1, key
