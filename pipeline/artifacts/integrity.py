"""Verified artifacts: every file's size and sha256, taken while it is written and checked
while it is read, so a truncated, altered or missing file fails its reader by name.

A writer hashes the bytes as the stage writes them (:class:`HashingWriter`). A reader
reads the file once, whole, hashes those bytes and checks them (:func:`check`) before
the stage parses them from memory: nothing is read twice, and a damaged file never
reaches a parser (the object store read whole objects already; artifacts here are CSVs
and small models). Where the records live is the caller's business (:class:`FileBook`):
the run's ledger record for tasks, a dict for tests and the in-process path.
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
from dataclasses import asdict, dataclass
from typing import BinaryIO, Protocol

@dataclass(frozen=True)
class FileDigest:
    """What was written to one artifact: its size, its sha256 and the task that wrote it."""

    size: int
    sha256: str
    task: str = ""

    def as_dict(self) -> dict:
        """JSON-ready form, as the run record stores it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FileDigest":
        """The digest a run record stored (see :meth:`as_dict`)."""
        return cls(int(data["size"]), str(data["sha256"]), str(data.get("task", "")))


class FileBook(Protocol):
    """Where the digests of a run's files are kept (the run record, or memory)."""

    def expected(self, name: str) -> FileDigest | None: ...
    def written(self, name: str, digest: FileDigest) -> None: ...


class MemoryFileBook:
    """A :class:`FileBook` in a dict: for a run done in one process (``--local``, tests)."""

    def __init__(self, task: str = "") -> None:
        self.task = task
        self.files: dict[str, FileDigest] = {}

    def expected(self, name: str) -> FileDigest | None:
        """The digest recorded for ``name``, if any."""
        return self.files.get(name)

    def written(self, name: str, digest: FileDigest) -> None:
        """Record ``digest`` for ``name``."""
        self.files[name] = digest


class ArtifactError(Exception):
    """An artifact a task reads is not what its writer recorded (or is gone)."""


class ArtifactMissing(ArtifactError):
    """The file a task reads does not exist."""


class ArtifactDamaged(ArtifactError):
    """The file a task reads differs in size or content from what was recorded."""


def _writer_words(run_id: str, expected: FileDigest | None) -> tuple[str, str]:
    if expected is None or not expected.task:
        return "no task recorded writing it", ""
    hint = f"; python cli.py restart {run_id} --from {expected.task} writes it again"
    return f"written by {expected.task}", hint


def missing(run_id: str, name: str, expected: FileDigest | None) -> ArtifactMissing:
    """The error for a missing file ``name`` of run ``run_id``."""
    who, hint = _writer_words(run_id, expected)
    return ArtifactMissing(f"file {name} of run {run_id} ({who}) is missing{hint}")


def damaged(run_id: str, name: str, expected: FileDigest, size: int, sha256: str) -> ArtifactDamaged:
    """The error for file ``name`` read as ``size`` bytes with ``sha256`` instead of ``expected``."""
    who, hint = _writer_words(run_id, expected)
    what = (f"{size} bytes instead of {expected.size}" if size != expected.size
            else f"sha256 {sha256[:12]}... instead of {expected.sha256[:12]}...")
    return ArtifactDamaged(f"file {name} of run {run_id} ({who}) is damaged: {what}{hint}")


class HashingWriter(io.RawIOBase):
    """A binary file being written: counts and hashes every byte on its way to ``raw``.

    ``tell()`` works (joblib aligns arrays with it, so files are byte for byte what a
    plain file would get); nothing else seeks. ``path`` is the temp file being written.
    """

    def __init__(self, raw: BinaryIO, path: os.PathLike[str] | str) -> None:
        super().__init__()
        self.raw = raw
        self.path = path
        self.size = 0
        self._sha = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")  # a str raises TypeError here, as a binary file does
        written = self.raw.write(view)
        written = len(view) if written is None else written
        self._sha.update(view[:written])
        self.size += written
        return written

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        if not self.raw.closed:
            self.raw.flush()

    def digest(self, task: str = "") -> FileDigest:
        """Size and sha256 of everything written so far."""
        return FileDigest(self.size, self._sha.hexdigest(), task)


def check(run_id: str, name: str, expected: FileDigest, data: bytes) -> None:
    """Raise :class:`ArtifactDamaged` unless ``data`` (file ``name`` as read, whole) is what
    its writer recorded (``expected``)."""
    if len(data) != expected.size:
        raise damaged(run_id, name, expected, len(data), "")
    sha = hashlib.sha256(data).hexdigest()
    if sha != expected.sha256:
        raise damaged(run_id, name, expected, len(data), sha)


_umask_lock = threading.Lock()


def current_umask() -> int:
    """This process's umask, read without changing it where Linux allows (no race with threads)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    with _umask_lock:  # elsewhere: set and restore (briefly visible to other threads)
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def file_mode() -> int:
    """The mode a new file gets here: ``0o666`` less the umask (``mkstemp`` makes ``0o600``)."""
    return 0o666 & ~current_umask()
