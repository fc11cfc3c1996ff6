"""Five sweeps submitted at once, with different alphas and labels, stay apart."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CLI, ROOT, pipeline_env, start_worker, stop_process
from pipeline.definition import flow
from pipeline.ledger.records import Ledger
from pipeline.redis_conn import make_client
from test_stages import tutorial_score

SWEEPS = {
    "team-a": ["1.0", "0.1"],
    "team-b": ["0.5", "0.05", "0.005"],
    "team-c": ["2.0"],
    "team-d": ["0.3", "0.03"],
    "team-e": ["1.0", "0.001", "3.0", "0.2"],
}


@pytest.fixture
def label_workers(clean_redis, tmp_path):
    labels = [arg for label in SWEEPS for arg in ("--label", label)]
    workers = [start_worker(clean_redis.url, tmp_path / f"w{i}.log", *labels, "--pool", "threads",
                            "--concurrency", "6") for i in range(2)]
    yield workers
    for w in workers:
        stop_process(w.proc)


def test_five_concurrent_sweeps(clean_redis, label_workers, tmp_path):
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "art"))
    procs = {
        label: subprocess.Popen([sys.executable, CLI, "sweep", "--alphas", *alphas, "--label", label,
                                 "--sleep", "0.2", "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        for label, alphas in SWEEPS.items()
    }
    docs = {}
    for label, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        docs[label] = json.loads(out)
    ledger = Ledger(make_client(clean_redis.url), 3600)
    dirs = set()
    for label, doc in docs.items():
        alphas = SWEEPS[label]
        assert doc["results"] == {str(float(a)): tutorial_score(17, 100, float(a)) for a in alphas}
        run_dir = Path(doc["artifacts"])
        dirs.add(run_dir)
        assert sorted(p.name for p in run_dir.iterdir()) == sorted(
            f"eval_model_{float(a)}_train_dataset.txt" for a in alphas)
        run = ledger.get_run(doc["run_id"])
        assert run["queue"] == label and run["params"]["alphas"] == [float(a) for a in alphas]
        rows = ledger.tasks(doc["run_id"], flow.task_keys(len(alphas)))
        assert all(r["state"] == "Success" and r["attempts"] == 1 for r in rows)
        assert len(ledger.task_states(doc["run_id"])) == len(flow.task_keys(len(alphas)))
    assert len(dirs) == 5
