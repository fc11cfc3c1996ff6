"""Processes that outlive the command that started them: launch, pid records, stop.

A process is recorded as ``"<pid> <create time>"`` in ``<dir>/<name>.pid``; the create
time guards against a reused pid. Files are replaced atomically, so lock-free readers
never see half a record.
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

import psutil

STOP_GRACE = 10.0

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


def pid_path(state_dir: Path, name: str) -> Path:
    """Pid file of process ``name`` in ``state_dir``."""
    return state_dir / f"{name}.pid"


def read_record(state_dir: Path, name: str) -> PidRecord | None:
    """The recorded ``(pid, create time)`` of process ``name``, or None."""
    try:
        pid, created = pid_path(state_dir, name).read_text().split()
        return int(pid), float(created)
    except (OSError, ValueError):
        return None


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` so lock-free readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_pid(state_dir: Path, name: str, pid: int) -> PidRecord:
    """Record ``pid`` of process ``name`` with its create time (guards against pid reuse)."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = 0.0
    write_atomic(pid_path(state_dir, name), f"{pid} {created!r}\n")
    return pid, created


def alive(record: PidRecord | None) -> bool:
    """True if the recorded process still runs (zombies and reused pids count as dead)."""
    if record is None:
        return False
    try:
        proc = psutil.Process(record[0])
        return abs(proc.create_time() - record[1]) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def launch(argv: list[str], log: Path, *, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> int:
    """Start ``argv`` detached (new session, output to ``log``); return its pid."""
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, str(log), *argv], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise RuntimeError(f"could not start {argv[0]}: {last}")
    return int(done.stdout)


@contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Hold the exclusive ``flock`` on ``state_dir/lock``."""
    with open(state_dir / "lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def terminate(records: list[PidRecord | None], grace: float = STOP_GRACE) -> bool:
    """SIGTERM the live ``records``' process groups, SIGKILL after ``grace``; True if any lived."""
    live = [r for r in records if alive(r)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid, _created in filter(alive, live):
            try:
                os.killpg(pid, sig)  # pid leads its own group (start_new_session)
            except (ProcessLookupError, PermissionError):
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(map(alive, live)) and time.monotonic() < deadline:
            time.sleep(0.05)
    return bool(live)
