"""Run directories, atomic writes and confinement of file names to a run's directory."""
from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""Every run id the project accepts (and so every run directory's name)."""

TMP_DIR_NAME = ".tmp"
"""Folder under the artifacts root holding files being written; never inside a run dir."""


class UnsafePathError(ValueError):
    """A file name that would leave its run's directory."""


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a valid run id, else raise ValueError naming it."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise ValueError(f"invalid run id {run_id!r}: must match {RUN_ID_PATTERN.pattern}")
    return run_id


class RunDir:
    """The directory of one run: ``<root>/<run id>``, with confined names inside it."""

    def __init__(self, root: str | os.PathLike[str], run_id: str) -> None:
        self.root = Path(root).resolve()
        self.run_id = check_run_id(run_id)
        self.path = self.root / run_id
        self.tmp = self.root / TMP_DIR_NAME

    def ensure(self) -> "RunDir":
        """Create the run directory and the temp folder if missing."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self

    def resolve(self, name: str) -> Path:
        """The path of file ``name`` in this run dir; refuse names that point elsewhere."""
        if (
            not isinstance(name, str)
            or not name
            or name in (".", "..")
            or "/" in name
            or "\\" in name
            or "\x00" in name
        ):
            raise UnsafePathError(f"file name {name!r} is not a plain name inside run {self.run_id}")
        path = (self.path / name).resolve()
        if path.parent != self.path.resolve():
            raise UnsafePathError(f"file name {name!r} points outside run {self.run_id}")
        return path

    @contextmanager
    def atomic(self, name: str) -> Iterator[Path]:
        """Yield a temp path to write ``name`` to; rename it into place only on success.

        The temp file lives in ``<root>/.tmp`` (same file system, so the rename is atomic);
        on an exception it is removed and the final name is left untouched.
        """
        final = self.resolve(name)
        self.ensure()
        suffix = "".join(Path(name).suffixes[-1:])
        fd, tmp_name = tempfile.mkstemp(prefix=f"{self.run_id}.", suffix=suffix, dir=self.tmp)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()

    def remove(self, name: str) -> bool:
        """Delete file ``name`` from the run dir; False if it was already gone."""
        try:
            self.resolve(name).unlink()
            return True
        except FileNotFoundError:
            return False

    def listing(self) -> list[str]:
        """Names of the files now in the run directory, sorted."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir())
