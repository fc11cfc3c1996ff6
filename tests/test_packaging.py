"""`pip install .` gives a `pipeline` command equal to `python cli.py`, and it runs on its own.

The project is copied (without tests and bench) and installed into a fresh virtual
environment that sees this interpreter's packages (`--system-site-packages`, `--no-deps`:
no download of the dependencies). The commands then run from a directory outside the
checkout, so only the installed copy of `pipeline` can be imported.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CLI, ROOT
from test_stages import tutorial_score

pytestmark = pytest.mark.slow

TOP_LEVEL_NOT_SHIPPED = {".git", "tests", "bench", "artifacts", ".pipeline", "build", ".venv", ".pytest_cache",
                         ".ruff_cache"}


def not_shipped(directory: str, names: list[str]) -> set[str]:
    """What the copy leaves out: caches anywhere, the checkout's own folders at its top only."""
    top = TOP_LEVEL_NOT_SHIPPED if Path(directory) == ROOT else set()
    return {n for n in names if n in top or n == "__pycache__" or n.endswith(".egg-info")}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with the project installed by ``pip install .``."""
    base = tmp_path_factory.mktemp("packaging")
    source, venv = base / "source", base / "venv"
    shutil.copytree(ROOT, source, ignore=not_shipped)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                              "--disable-pip-version-check", "--no-deps", str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


def outside_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user outside the checkout: no broker, no PYTHONPATH, state in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PIPELINE_", "PYTHONPATH"))}
    env["PIPELINE_STATE_DIR"] = str(tmp_path / "state")
    return env


def installed(venv: Path, *args: str, cwd: Path, env: dict[str, str], timeout: float = 60):
    return subprocess.run([str(venv / "bin" / "pipeline"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args", [["--help"], ["sweep", "--help"], ["worker", "--help"]], ids=" ".join)
def test_pipeline_command_help_equals_cli_py_help(venv, tmp_path, args):
    env = outside_env(tmp_path)
    ours = installed(venv, *args, cwd=tmp_path, env=env)
    theirs = subprocess.run([sys.executable, CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert ours.returncode == theirs.returncode == 0, ours.stderr + theirs.stderr
    assert ours.stdout.startswith("Usage: pipeline ")
    assert ours.stdout.replace("Usage: pipeline ", "Usage: cli.py ", 1) == theirs.stdout


def test_installed_pipeline_sweeps_on_its_own_embedded_stack(venv, tmp_path):
    import psutil

    env = outside_env(tmp_path)
    try:
        result = installed(venv, "sweep", "--alphas", "1.0", "0.1", "--json", "--artifacts", str(tmp_path / "art"),
                           cwd=tmp_path, env=env, timeout=180)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["results"] == {
            "1.0": tutorial_score(17, 100, 1.0), "0.1": tutorial_score(17, 100, 0.1)}
        worker_pid = int((tmp_path / "state" / "worker.pid").read_text().split()[0])
        worker = psutil.Process(worker_pid)
        site_packages = next((venv / "lib").glob("python3*/site-packages")).resolve()
        assert worker.cmdline()[:4] == [str(venv / "bin" / "python"), "-m", "pipeline.cli.main", "worker"]
        assert Path(worker.cwd()).resolve() == site_packages  # the installed copy, not the checkout
    finally:
        installed(venv, "stop", cwd=tmp_path, env=env)


def package_files(top: Path) -> set[str]:
    """Every file of the ``pipeline`` package under ``top`` (modules, templates, static files), no caches."""
    return {p.relative_to(top).as_posix() for p in (top / "pipeline").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_installed_files_are_the_checkouts(venv):
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    assert (site_packages / "beat_schedule.py").is_file()
    assert package_files(site_packages) == package_files(ROOT)
