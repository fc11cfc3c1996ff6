"""Where artifacts live: a local directory tree or any fsspec URL (``s3://bucket/prefix``).

An artifacts root holds one folder (local) or key prefix (object store) per run,
``<root>/<run id>/``, with plain file names inside. Two backends share one interface:

- :class:`LocalStore`: files under a local directory; a write goes to a temp file in
  ``<root>/.tmp`` and is renamed into place (``os.replace`` is atomic on one file system).
- :class:`FsspecStore`: any fsspec file system (s3fs for ``s3://``); a write goes to a
  local temp file that is uploaded in one request once complete (an S3 object appears
  whole or not at all), and a read downloads the object into memory.

Callers pass run ids and file names already checked (see :class:`pipeline.artifacts.rundir.RunDir`).
Credentials and endpoints come from the file system's own environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for s3fs).
"""
from __future__ import annotations

import io
import os
import tempfile
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

from pipeline.artifacts.integrity import file_mode

TMP_DIR_NAME = ".tmp"
"""Folder under a local artifacts root holding files being written; never inside a run dir."""

TMP_PREFIX = "pipeline-"
"""Prefix of every temp file a store creates (local ``.tmp`` or the system temp dir)."""


def is_url(root: str | os.PathLike[str]) -> bool:
    """True when ``root`` names a remote store (``scheme://...``), not a local path."""
    text = os.fspath(root)
    return "://" in text and not text.startswith("file://")


def normalize_root(root: str | os.PathLike[str]) -> str:
    """The artifacts root as stored in run records: a resolved local path, or the URL.

    Raises ValueError for a URL whose protocol fsspec does not know (or whose package,
    e.g. s3fs, is not installed) or that names no bucket/location.
    """
    text = os.fspath(root)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if not is_url(text):
        path = Path(text).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise ValueError(f"artifacts root {text!r} is a file, not a directory")
        return str(path)
    protocol, _, rest = text.partition("://")
    if not rest.strip("/"):
        raise ValueError(f"artifacts URL {text!r} names no bucket or location")
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except (ValueError, ImportError) as exc:
        raise ValueError(f"artifacts URL {text!r}: {exc}") from None
    return f"{protocol}://{rest.rstrip('/')}"


def run_location(root: str | os.PathLike[str], run_id: str) -> str:
    """Where a run's files are: ``<root>/<run id>``, a path or a URL (never ``s3:/...``).

    The one place a root becomes a run's location: the stores, the records' readers and
    every command's output call it. ``root`` is a normalized root, as run records store it.
    """
    text = os.fspath(root)
    return f"{text.rstrip('/')}/{run_id}" if is_url(text) else str(Path(text) / run_id)


class Store(Protocol):
    """What a run directory needs from a backend; names are plain and already checked."""

    root: str

    def location(self, run_id: str, name: str | None = None) -> Path | str: ...
    def ensure(self, run_id: str) -> None: ...
    def atomic(self, run_id: str, name: str) -> AbstractContextManager[Path]: ...
    def reader(self, run_id: str, name: str) -> AbstractContextManager[BinaryIO]: ...
    def remove(self, run_id: str, name: str) -> bool: ...
    def listing(self, run_id: str) -> list[str]: ...
    def discard_temp(self, run_id: str) -> int: ...


def _discard_temp_files(directory: Path, run_id: str) -> int:
    """Delete the temp files of ``run_id`` in ``directory`` (``pipeline-<run id>.*``); return how many."""
    removed = 0
    for path in directory.glob(f"{TMP_PREFIX}{run_id}.*"):  # '.' ends the run id: no other run matches
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def open_store(root: str | os.PathLike[str]) -> Store:
    """The backend for an artifacts root (local path or URL)."""
    root = normalize_root(root)
    return FsspecStore(root) if is_url(root) else LocalStore(root)


def _suffix(name: str) -> str:
    return "".join(Path(name).suffixes[-1:])


class LocalStore:
    """Run directories on this machine: ``<root>/<run id>/<name>``, temp files in ``<root>/.tmp``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """``root``: a normalized local root (see :func:`open_store`)."""
        self.root = os.fspath(root)
        self.path = Path(self.root)
        self.tmp = self.path / TMP_DIR_NAME

    def location(self, run_id: str, name: str | None = None) -> Path:
        """The run directory, or the path of ``name`` in it."""
        directory = Path(run_location(self.root, run_id))
        return directory if name is None else directory / name

    def ensure(self, run_id: str) -> None:
        """Create the run directory and the temp folder if missing."""
        self.location(run_id).mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def atomic(self, run_id: str, name: str) -> Iterator[Path]:
        """Yield a temp path in ``<root>/.tmp``; fsync it, give it the umask's mode (``mkstemp``
        makes ``0600``) and rename it to ``name`` on success."""
        final = self.location(run_id, name)
        self.ensure(run_id)
        fd, tmp_name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{run_id}.", suffix=_suffix(name), dir=self.tmp)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, file_mode())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    @contextmanager
    def reader(self, run_id: str, name: str) -> Iterator[BinaryIO]:
        """Open ``name`` for reading (binary)."""
        with open(self.location(run_id, name), "rb") as handle:
            yield handle

    def remove(self, run_id: str, name: str) -> bool:
        """Delete ``name``; False if it was already gone."""
        try:
            self.location(run_id, name).unlink()
            return True
        except FileNotFoundError:
            return False

    def listing(self, run_id: str) -> list[str]:
        """Names of the files now in the run directory, sorted."""
        directory = self.location(run_id)
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir())

    def discard_temp(self, run_id: str) -> int:
        """Delete what writers of the run left in ``<root>/.tmp`` (a writer killed mid-write)."""
        return _discard_temp_files(self.tmp, run_id) if self.tmp.is_dir() else 0


class FsspecStore:
    """Run prefixes in an fsspec file system: ``<url>/<run id>/<name>``."""

    def __init__(self, url: str) -> None:
        from fsspec.core import url_to_fs

        self.root = url.rstrip("/")
        # No listings cache: other machines write to the same prefix at any time.
        self.fs, self.base = url_to_fs(self.root, use_listings_cache=False)
        self.base = self.base.rstrip("/")

    def location(self, run_id: str, name: str | None = None) -> str:
        """The run prefix's URL, or the URL of ``name`` in it."""
        url = run_location(self.root, run_id)
        return url if name is None else f"{url}/{name}"

    def _key(self, run_id: str, name: str) -> str:
        return f"{self.base}/{run_id}/{name}"

    def ensure(self, run_id: str) -> None:
        """Nothing to create: object stores have no directories."""

    @contextmanager
    def atomic(self, run_id: str, name: str) -> Iterator[Path]:
        """Yield a local temp path (system temp dir); upload it as ``name`` on success only.

        The upload is one PUT for files below s3fs's multipart threshold (2 x 50 MiB) and a
        multipart upload above it: either way the object appears whole, or not at all.
        """
        fd, tmp_name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{run_id}.", suffix=_suffix(name))
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            self.fs.put_file(str(tmp), self._key(run_id, name))
        finally:
            tmp.unlink(missing_ok=True)

    @contextmanager
    def reader(self, run_id: str, name: str) -> Iterator[BinaryIO]:
        """Download ``name`` into memory and yield it as a binary file object."""
        yield io.BytesIO(self.fs.cat_file(self._key(run_id, name)))

    def remove(self, run_id: str, name: str) -> bool:
        """Delete ``name``; False if it was already gone."""
        key = self._key(run_id, name)
        if not self.fs.exists(key):
            return False
        self.fs.rm_file(key)
        return True

    def listing(self, run_id: str) -> list[str]:
        """Names of the objects now under the run prefix, sorted."""
        try:
            entries = self.fs.ls(f"{self.base}/{run_id}", detail=True)
        except FileNotFoundError:
            return []
        return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "file")

    def discard_temp(self, run_id: str) -> int:
        """Delete the run's temp files a killed writer left in this machine's temp dir.

        Nothing partial ever reaches the store itself (an upload appears whole or not at all).
        """
        return _discard_temp_files(Path(tempfile.gettempdir()), run_id)
