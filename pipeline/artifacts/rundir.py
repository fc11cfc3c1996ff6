"""Run directories: confinement of file names to a run, atomic and verified files, on any store.

:class:`RunDir` is what stages see. It checks every name, hashes what is written and read
(:mod:`pipeline.artifacts.integrity`), and hands the storage to the store of the artifacts
root (:mod:`pipeline.artifacts.store`): a local directory or an fsspec URL.
"""
from __future__ import annotations

import copy
import io
import os
import re
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from pipeline.artifacts.integrity import FileBook, HashingWriter, check, missing
from pipeline.artifacts.store import TMP_DIR_NAME, open_store  # noqa: F401  (TMP_DIR_NAME re-exported)

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""Every run id the project accepts (and so every run directory's name)."""


class UnsafePathError(ValueError):
    """A file name that would leave its run's directory."""


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a valid run id, else raise ValueError naming it."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise ValueError(f"invalid run id {run_id!r}: must match {RUN_ID_PATTERN.pattern}")
    return run_id


class RunDir:
    """The files of one run, ``<root>/<run id>/<name>``, where root is a path or a URL.

    Names are plain file names: anything that could leave the run's directory or prefix
    (``..``, separators, NUL) is refused with :class:`UnsafePathError`. With a
    :class:`~pipeline.artifacts.integrity.FileBook` (see :meth:`tracked`), every file
    written is recorded there (size, sha256, writing task) and every file read is checked
    against its record.
    """

    book: FileBook | None = None
    task: str = ""

    def __init__(self, root: str | os.PathLike[str], run_id: str) -> None:
        self.run_id = check_run_id(run_id)
        self.store = open_store(root)
        self.root = self.store.root
        self.path = self.store.location(run_id)
        """The run directory (a Path) or the run prefix's URL (a str)."""

    def ensure(self) -> "RunDir":
        """Create the run directory and the temp folder if missing (no-op on object stores)."""
        self.store.ensure(self.run_id)
        return self

    def check_name(self, name: str) -> str:
        """Return ``name`` if it is a plain file name inside this run, else raise UnsafePathError."""
        if (
            not isinstance(name, str)
            or not name
            or name in (".", "..")
            or "/" in name
            or "\\" in name
            or "\x00" in name
        ):
            raise UnsafePathError(f"file name {name!r} is not a plain name inside run {self.run_id}")
        return name

    def resolve(self, name: str) -> Path | str:
        """Where file ``name`` of this run is: a local Path, or a URL on a remote store."""
        location = self.store.location(self.run_id, self.check_name(name))
        if isinstance(location, Path) and location.resolve().parent != Path(self.path).resolve():
            raise UnsafePathError(f"file name {name!r} points outside run {self.run_id}")
        return location

    def tracked(self, book: FileBook, task: str) -> "RunDir":
        """This run directory for task ``task``: its writes recorded in ``book``, its reads checked."""
        view = copy.copy(self)
        view.book, view.task = book, task
        return view

    @contextmanager
    def atomic(self, name: str) -> Iterator[HashingWriter]:
        """Yield a binary file to write ``name`` to; it becomes ``name`` only on success.

        Local: the temp file lives in ``<root>/.tmp`` and is renamed into place with the
        umask's mode. Remote: it lives in the system temp dir and is uploaded whole. On an
        exception the temp file is removed and ``name`` is left untouched. The bytes are
        hashed as they are written; the digest goes to the book once ``name`` is in place.
        """
        self.resolve(name)
        with self.store.atomic(self.run_id, name) as tmp:
            with open(tmp, "wb") as raw:
                with HashingWriter(raw, tmp) as writer:
                    yield writer
            written = writer.digest(self.task)
        if self.book is not None:
            self.book.written(name, written)

    @contextmanager
    def reader(self, name: str) -> Iterator[BinaryIO]:
        """Open file ``name`` for reading as a binary file object, verified against its record.

        A recorded file is read whole, once, and its size and sha256 compared with what its
        writer recorded before the caller sees a byte: a difference raises
        :class:`~pipeline.artifacts.integrity.ArtifactDamaged`, a missing file
        :class:`~pipeline.artifacts.integrity.ArtifactMissing`, both naming the file and its
        writer. A file without a record (no book, or written before records existed) is read
        unchecked.
        """
        self.resolve(name)
        expected = self.book.expected(name) if self.book is not None else None
        with ExitStack() as stack:
            try:
                inner = stack.enter_context(self.store.reader(self.run_id, name))
            except FileNotFoundError as exc:
                raise missing(self.run_id, name, expected) from exc
            if expected is None:
                yield inner
                return
            data = inner.read()
        check(self.run_id, name, expected, data)
        yield io.BytesIO(data)

    def remove(self, name: str) -> bool:
        """Delete file ``name`` from the run; False if it was already gone."""
        self.resolve(name)
        return self.store.remove(self.run_id, name)

    def listing(self) -> list[str]:
        """Names of the files now in the run, sorted."""
        return self.store.listing(self.run_id)

    def discard_temp(self) -> int:
        """Delete temp files of this run left by writers that died mid-write; return how many.

        Only safe once no task of the run writes any more: the cleanup stage calls it.
        """
        return self.store.discard_temp(self.run_id)
