"""Helpers of the fault-injection tests: an isolated Redis, workers to kill, checks of a finished run.

Each fault test gets its own ``redis-server`` (append-only, in its tmp dir), so a short
visibility timeout or a restart never touches the session's Redis and worker.
"""
from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from conftest import RedisServer, Worker, pipeline_env, poll, run_cli, start_redis, start_worker, stop_process  # noqa: F401  (poll re-exported)
from pipeline.definition import flow
from pipeline.ledger.records import Ledger
from pipeline.redis_conn import make_client
from test_stages import tutorial_score

FAST_RESTORE = {
    "PIPELINE_VISIBILITY_TIMEOUT": "8",
    "PIPELINE_UNACKED_RESTORE_INTERVAL": "0.5",
    "PIPELINE_UNACKED_RESTORE_THROTTLE": "1",
}
"""Unacked messages nobody alive holds come back 8 s after delivery, looked for every 0.5 s.

A live worker's messages never come back by this timeout (its heartbeat keeps them, see
pipeline/worker/kombu_redis.py); a dead worker's come back once its heartbeat expired.
"""


@dataclass
class Stack:
    """One test's Redis, its workers, and the environment CLI and workers share."""

    redis: RedisServer
    tmp: Path
    env: dict[str, str]
    workers: list[Worker] = field(default_factory=list)

    @property
    def artifacts(self) -> Path:
        return Path(self.env["PIPELINE_ARTIFACTS"])

    def ledger(self) -> Ledger:
        return Ledger(make_client(self.redis.url), 3600)

    def worker(self, *args: str, name: str = "worker", env_extra: dict[str, str] | None = None) -> Worker:
        """Start ``python cli.py worker ARGS`` with this stack's environment (plus ``env_extra``);
        return once ready."""
        log = self.tmp / f"{name}-{len(self.workers)}.log"
        started = start_worker(self.redis.url, log, *args, env={**self.env, **(env_extra or {})})
        self.workers.append(started)
        return started

    def cli(self, *args: str, timeout: float = 120):
        return run_cli(*args, env=self.env, timeout=timeout)

    def submit(self, *args: str) -> str:
        """``sweep ARGS --no-wait --json``; return the run id."""
        sent = self.cli("sweep", *args, "--no-wait", "--json")
        assert sent.returncode == 0, sent.stderr
        return json.loads(sent.stdout)["run_id"]

    def status(self, run_id: str) -> dict:
        result = self.cli("status", run_id, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def close(self) -> None:
        """Kill every worker (whole process group: nothing of this test survives it) and Redis."""
        for w in self.workers:
            stop_process(w.proc, signal.SIGKILL)
        stop_process(self.redis.proc)


def make_stack(tmp_path: Path, **env: str) -> Stack:
    """A fresh append-only redis-server in ``tmp_path`` and the environment to reach it."""
    server = start_redis(tmp_path / "redis")
    full_env = pipeline_env(server.url, PIPELINE_ARTIFACTS=str(tmp_path / "artifacts"), **env)
    return Stack(server, tmp_path, full_env)


def kill_group(worker: Worker) -> None:
    """SIGKILL a worker's whole process group (main process and pool children) and reap it."""
    members = [worker.proc.pid] + [c.pid for c in psutil.Process(worker.proc.pid).children(recursive=True)]
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(10)
    poll(lambda: not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                         for pid in members), "every process of the killed worker to be gone", 10)


def log_lines(ledger: Ledger, run_id: str) -> list[tuple[str, str]]:
    """``(task key, line)`` of every line the run's stages printed."""
    return [(fields["task"], fields["line"]) for _, fields in ledger.read_logs(run_id)]


def running(ledger: Ledger, run_id: str, keys: list[str]) -> bool:
    """True once every task of ``keys`` has printed its begin line in its current attempt."""
    states = ledger.task_states(run_id)
    return all(states.get(k) == "Running" for k in keys) and all(
        (k, f"{k.split('[')[0]} begin") in log_lines(ledger, run_id) for k in keys)


def assert_completed_once(stack: Stack, run_id: str, alphas: list[str], attempts: dict[str, int],
                          n_samples: int = 100) -> None:
    """The run ended Success with the tutorial's scores, each task succeeded exactly once.

    ``attempts``: task key -> expected attempts where not 1. Each body's begin line appears
    once per attempt and its end line exactly once (no task completed twice), the run's
    ``remaining`` is exactly 0 (no completion counted twice), and no file is left but the
    evaluations (nothing partial in the run directory or the artifacts' ``.tmp``).
    """
    ledger = stack.ledger()
    run = ledger.get_run(run_id)
    assert run["state"] == "Success", run
    assert run["remaining"] == "0", run
    keys = flow.task_keys(len(alphas))
    lines = log_lines(ledger, run_id)
    for row in ledger.tasks(run_id, keys):
        key, stage = row["key"], row["key"].split("[")[0]
        want = attempts.get(key, 1)
        assert (row["state"], row["attempts"]) == ("Success", want), row
        assert lines.count((key, f"{stage} begin")) == want, (key, lines)
        assert lines.count((key, f"{stage} end")) == 1, (key, lines)
    scores = {a: ledger.outputs(run_id, [flow.evaluate_key(i)])[flow.evaluate_key(i)]["score"]
              for i, a in enumerate(alphas)}
    assert scores == {a: tutorial_score(17, n_samples, float(a)) for a in alphas}
    run_dir = stack.artifacts / run_id
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        f"eval_model_{float(a)}_train_dataset.txt" for a in alphas)
    for i, a in enumerate(alphas):
        assert float((run_dir / f"eval_model_{float(a)}_train_dataset.txt").read_text()) == scores[a]
    tmp = stack.artifacts / ".tmp"
    assert not tmp.exists() or not list(tmp.iterdir()), list(tmp.iterdir())


def block_model_files(run_dir: Path, alphas: list[str]) -> list[Path]:
    """Make every ``train_model`` attempt fail (an OSError, which retries) until unblocked: a
    non-empty directory where each model file goes, so renaming the written file into place
    fails. (Hiding an input no longer does: a missing input is an ArtifactMissing, never retried.)"""
    blocks = []
    for alpha in alphas:
        block = run_dir / f"model_{float(alpha)}_train_dataset.joblib"
        (block / "blocker").mkdir(parents=True)
        blocks.append(block)
    return blocks


def unblock(blocks: list[Path]) -> None:
    """Remove what :func:`block_model_files` put in the way."""
    for block in blocks:
        (block / "blocker").rmdir()
        block.rmdir()
