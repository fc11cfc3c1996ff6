"""The sklearn-1.x worker environment, built as workers/README.md says, serves a run.

Its own virtual environment from ``workers/requirements-sklearn-1.txt`` only (no Flower,
no test packages: what a worker needs must be in that file), its worker on queue
``sklearn-1``, and a sweep routed there gets the tutorial's R^2 values.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, pipeline_env, run_cli, start_worker, stop_process
from pipeline.definition import flow
from test_stages import tutorial_score
from workers.environments import ENVIRONMENTS

pytestmark = pytest.mark.slow


def test_the_sklearn_1_environment_in_its_own_venv_serves_a_run(clean_redis, tmp_path):
    [env_decl] = [e for e in ENVIRONMENTS if e.name == "sklearn-1.x"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                "-r", str(env_decl.requirements_path)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    probe = subprocess.run([str(python), "-c", "import sklearn, importlib.util as u; "
                            "print(sklearn.__version__, u.find_spec('flower') is None, u.find_spec('pytest') is None)"],
                           capture_output=True, text=True, timeout=60)
    version, no_flower, no_pytest = probe.stdout.split()
    assert version.startswith("1.") and no_flower == no_pytest == "True", probe  # its own packages only

    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "artifacts"))
    [queue] = env_decl.queues
    worker = start_worker(clean_redis.url, tmp_path / "worker.log", "--label", queue, "--pool", "prefork",
                          "--concurrency", "2", env=env, command=(str(python), str(ROOT / "cli.py"), "worker"))
    try:
        result = run_cli("sweep", "--alphas", "1.0", "0.1", "--label", queue, "--json", env=env, timeout=180)
        assert result.returncode == 0, (result.stderr, worker.text()[-3000:])
        doc = json.loads(result.stdout)
        assert doc["results"] == {a: tutorial_score(17, 100, float(a)) for a in ("1.0", "0.1")}
        assert f"{flow.train_key(0)}: train_model begin" in worker.text()  # this worker computed it
    finally:
        stop_process(worker.proc)
