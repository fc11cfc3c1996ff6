"""A task's printed lines, written to the run's log in one round trip instead of one a line.

Lines wait in the task's buffer until the task ends (:meth:`TaskLog.close`), or until a
process-wide flusher thread finds them older than :data:`FLUSH_AFTER` seconds, so a
long task's lines still reach ``logs --follow`` while it runs. Order is kept: one lock
per task covers taking the lines and writing them.
"""
from __future__ import annotations

import os
import threading
import time

from pipeline.ledger import Ledger

FLUSH_AFTER = 0.25
"""Seconds a printed line may wait in a running task's buffer before it is written."""

_open: set["TaskLog"] = set()
_open_lock = threading.Lock()
_flusher_pid: int | None = None


class TaskLog:
    """The printed lines of one task of one run (a sink for :func:`capture_lines`)."""

    def __init__(self, book: Ledger, run_id: str, key: str) -> None:
        self.book, self.run_id, self.key = book, run_id, key
        self.pending: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        _ensure_flusher()
        with _open_lock:
            _open.add(self)

    def add(self, line: str, ts: float) -> None:
        """Buffer one line printed at unix time ``ts``."""
        with self.lock:
            self.pending.append((line, ts))

    def flush(self, older_than: float | None = None) -> None:
        """Write the buffered lines (only if the oldest waited ``older_than`` seconds)."""
        with self.lock:
            if not self.pending:
                return
            if older_than is not None and time.time() - self.pending[0][1] < older_than:
                return
            lines = list(self.pending)
            self.book.append_logs(self.run_id, self.key, lines)  # raises: the lines stay buffered
            del self.pending[: len(lines)]

    def close(self) -> None:
        """Write what is left; the flusher forgets this task."""
        with _open_lock:
            _open.discard(self)
        self.flush()


def _flush_loop() -> None:
    while True:
        time.sleep(FLUSH_AFTER / 2)
        with _open_lock:
            logs = list(_open)
        for log in logs:
            try:
                log.flush(older_than=FLUSH_AFTER)
            except Exception:  # noqa: BLE001  (Redis blip: the task's own close() retries)
                pass


def _ensure_flusher() -> None:
    """Start this process's flusher thread once (again in a forked pool child)."""
    global _flusher_pid
    if _flusher_pid == os.getpid():
        return
    with _open_lock:
        if _flusher_pid != os.getpid():
            threading.Thread(target=_flush_loop, name="log-flusher", daemon=True).start()
            _flusher_pid = os.getpid()
