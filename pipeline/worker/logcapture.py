"""Per-task capture of printed lines, correct when many tasks print at once in one process.

``sys.stdout`` is shared by every thread, so it is replaced once, process-wide, by a
router that sends each write to the sink of the *calling thread's* current task (and on
to the original stream, so the worker's own log has the lines too).
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

LineSink = Callable[[str, float], None]

_local = threading.local()
_install_lock = threading.Lock()


class _Capture:
    """Buffers one task's writes and emits complete, non-blank lines to its sink."""

    def __init__(self, sink: LineSink) -> None:
        self.sink = sink
        self.partial = ""

    def write(self, text: str) -> None:
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            self.emit(line)

    def emit(self, line: str) -> None:
        if line.strip():
            self.sink(line.rstrip("\r"), time.time())

    def close(self) -> None:
        if self.partial:
            self.emit(self.partial)
            self.partial = ""


class StdoutRouter:
    """A ``sys.stdout`` stand-in routing writes to the calling thread's capture."""

    def __init__(self, original: TextIO) -> None:
        self.original = original

    def write(self, text: str) -> int:
        capture: _Capture | None = getattr(_local, "capture", None)
        if capture is not None:
            capture.write(text)
        return self.original.write(text)

    def flush(self) -> None:
        self.original.flush()

    def __getattr__(self, name: str):
        return getattr(self.original, name)


def install() -> None:
    """Put the router in place of ``sys.stdout`` once (idempotent, thread-safe)."""
    with _install_lock:
        if not isinstance(sys.stdout, StdoutRouter):
            sys.stdout = StdoutRouter(sys.stdout)


@contextmanager
def capture_lines(sink: LineSink) -> Iterator[None]:
    """Send every line this thread prints inside the block to ``sink(line, unix_time)``."""
    install()
    previous = getattr(_local, "capture", None)
    capture = _local.capture = _Capture(sink)
    try:
        yield
    finally:
        capture.close()
        _local.capture = previous
