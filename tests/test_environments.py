"""workers/environments.py: declared environments, their files and commands."""
from __future__ import annotations

import subprocess
import sys

import pytest

import cli
from conftest import ROOT
from workers import environments
from workers.environments import ENVIRONMENTS, Environment


def test_default_and_a_scikit_learn_environment_are_declared():
    default = environments.get("default")
    assert default.queues == ("default",)
    sklearn = [env for env in ENVIRONMENTS if env.name.startswith("sklearn-")]
    assert sklearn, "at least one scikit-learn environment"
    for env in ENVIRONMENTS:
        text = env.requirements_path.read_text()
        assert "scikit-learn" in text and "celery" in text, env.requirements
    assert sklearn[0].requirements.startswith("workers/")
    assert environments.environment_for_queue("sklearn-1") is environments.get("sklearn-1.x")
    with pytest.raises(KeyError, match="known: default"):
        environments.get("nope")


def test_worker_commands_are_valid_cli_invocations():
    commands = environments.worker_commands()
    assert commands["sklearn-1.x"].startswith("python cli.py worker --label sklearn-1")
    for env in ENVIRONMENTS:
        argv = env.worker_command()
        assert argv[:3] == ["python", "cli.py", "worker"]
        ctx = cli.cli.commands["worker"].make_context("worker", argv[3:])  # parses, does not run
        assert ctx.params["labels"] == env.queues and ctx.params["pool"] == env.pool


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError, match="not a valid queue"):
        Environment("x", ("bad queue",), "requirements.txt")
    with pytest.raises(ValueError, match="consumes no queue"):
        Environment("x", (), "requirements.txt")


def test_module_prints_every_environment():
    out = subprocess.run([sys.executable, "-m", "workers.environments"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    for env in ENVIRONMENTS:
        assert env.name in out and " ".join(env.worker_command()) in out
