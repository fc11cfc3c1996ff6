"""The embedded stack's supervisor: restarts a dead worker; stops the stack when idle or when Redis died.

A worker process can always die (killed, out of memory, a bug): while Redis runs, the
supervisor starts it again with its recorded command within one check interval, waiting
longer (up to ``MAX_RESTART_DELAY``) while it keeps dying soon after each start.

Started detached by :func:`pipeline.embedded.stack.ensure_stack` as
``python -m pipeline.embedded.supervisor supervise STATE_DIR``; logs to ``supervisor.log``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import redis

from pipeline.embedded.detached import PidRecord, alive, locked, read_record
from pipeline.embedded.stack import recorded_port, redis_client, restart_worker, stop_all
from pipeline.settings import Settings, get_settings

MAX_RESTART_DELAY = 60.0
"""Most seconds the supervisor waits before restarting a worker that keeps dying."""

QUICK_DEATH = 30.0
"""A worker dead within this many seconds of its restart doubles the next restart's delay."""


def _busy(state_dir: Path, settings: Settings) -> bool:
    """True if the worker runs and holds unacknowledged messages (a long task)."""
    port = recorded_port(state_dir)
    if port is None or not alive(read_record(state_dir, "worker")):
        return False
    try:
        with redis_client(port, settings.connect_timeout) as client:
            return client.hlen("unacked") > 0  # kombu's Redis transport default key
    except redis.RedisError:
        return False


def _exit_reason(state_dir: Path, own: PidRecord, since: float, settings: Settings) -> str | None:
    """Why the supervisor should stop the stack now, or None to keep it."""
    if not alive(own):
        return "redis died"
    try:
        last_use = max(since, (state_dir / "last_use").stat().st_mtime)
    except OSError:
        last_use = since
    idle_for = time.time() - last_use
    if idle_for < settings.idle_exit_seconds or _busy(state_dir, settings):
        return None
    return f"idle for {idle_for:.0f} s"


class WorkerRestarts:
    """Restart a dead worker, backing off (1 s doubling to ``MAX_RESTART_DELAY``) while it dies quickly."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.last = float("-inf")

    def check(self, state_dir: Path, own: PidRecord) -> None:
        """Start the worker again if it is dead, Redis ``own`` still runs, and the delay has passed."""
        now = time.monotonic()
        if alive(read_record(state_dir, "worker")) or now < self.last + self.delay:
            return
        with locked(state_dir):  # not while a CLI command starts or stops the stack
            if read_record(state_dir, "redis") != own or not alive(own) or alive(read_record(state_dir, "worker")):
                return
            pid = restart_worker(state_dir)
        if pid is None:
            return
        quick = now - self.last < QUICK_DEATH + self.delay
        self.delay = min(MAX_RESTART_DELAY, max(1.0, self.delay * 2)) if quick else 0.0
        self.last = now
        _log(f"worker died; started it again (pid {pid})")


def _log(message: str) -> None:
    """A timestamped line on stdout (the supervisor log)."""
    print(time.strftime("%Y-%m-%d %H:%M:%S"), message, flush=True)


def _supervise(state_dir: Path, settings: Settings) -> None:
    """Restart a dead worker; stop the stack after ``settings.idle_exit_seconds`` idle, or when Redis died."""
    state_dir = state_dir.resolve()
    own, since = read_record(state_dir, "redis"), time.time()
    interval = max(0.5, min(5.0, settings.idle_exit_seconds / 4))
    _log(f"supervising redis {own}; idle exit after {settings.idle_exit_seconds:g} s")
    restarts = WorkerRestarts()
    while own is not None:
        time.sleep(interval)
        if read_record(state_dir, "redis") != own:
            _log("stack replaced or stopped; exiting")
            return
        restarts.check(state_dir, own)
        if _exit_reason(state_dir, own, since, settings) is None:
            continue
        with locked(state_dir):  # re-check: a CLI command may have used it meanwhile
            reason = _exit_reason(state_dir, own, since, settings)
            if reason is not None and read_record(state_dir, "redis") == own:
                _log(f"stopping the stack: {reason}")
                stop_all(state_dir, include_supervisor=False)
                return


def main(argv: list[str]) -> int:
    """``python -m pipeline.embedded.supervisor supervise STATE_DIR``."""
    if len(argv) == 2 and argv[0] == "supervise":
        _supervise(Path(argv[1]), get_settings())
        return 0
    print("usage: python -m pipeline.embedded.supervisor supervise STATE_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
