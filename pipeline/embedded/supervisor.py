"""The embedded stack's idle supervisor: stops it when unused for a while or when Redis died.

Started detached by :func:`pipeline.embedded.stack.ensure_stack` as
``python -m pipeline.embedded.supervisor supervise STATE_DIR``; logs to ``supervisor.log``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import redis

from pipeline.embedded.detached import PidRecord, alive, locked, read_record
from pipeline.embedded.stack import recorded_port, redis_client, stop_all
from pipeline.settings import Settings, get_settings


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


def _log(message: str) -> None:
    """A timestamped line on stdout (the supervisor log)."""
    print(time.strftime("%Y-%m-%d %H:%M:%S"), message, flush=True)


def _supervise(state_dir: Path, settings: Settings) -> None:
    """Stop the stack after ``settings.idle_exit_seconds`` idle, or when Redis died."""
    state_dir = state_dir.resolve()
    own, since = read_record(state_dir, "redis"), time.time()
    interval = max(0.5, min(5.0, settings.idle_exit_seconds / 4))
    _log(f"supervising redis {own}; idle exit after {settings.idle_exit_seconds:g} s")
    while own is not None:
        time.sleep(interval)
        if read_record(state_dir, "redis") != own:
            _log("stack replaced or stopped; exiting")
            return
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
