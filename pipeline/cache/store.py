"""The cache's store: entries and the content of their files, under ``<artifacts root>/.cache/``.

Layout: ``entries/<key>.json`` (what the stage returned, and each file it wrote with its
size and sha256) and ``blobs/<sha256>`` (a file's content, once for every entry that has
it). A put writes the blobs, then the entry, each whole (a local temp file renamed into
place; one PUT on an object store), so two tasks filling one key at once leave one valid
entry, and a reader never sees half of either. A get checks every blob's size and sha256
before anything is served: a damaged or missing part is a miss (:class:`CacheMiss`).
Nothing here is ever touched by a run's cleanup: it lives outside every run directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artifacts.integrity import file_mode
from pipeline.artifacts.store import is_url, normalize_root, run_location

CACHE_DIR_NAME = ".cache"
"""Folder (or prefix) of the cache under an artifacts root; never a run's id (ids have no dot)."""

BLOB_GRACE = 60.0
"""Seconds a blob no entry names is kept by prune: a put in flight writes its blobs first."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CacheMiss(Exception):
    """No usable entry for a key: absent, unreadable, or not what it says (the reason)."""


@dataclass(frozen=True)
class Entry:
    """One stored result: the stage's output and the files it wrote (name -> ``{size, sha256}``)."""

    key: str
    stage: str
    output: Any
    files: dict[str, dict[str, Any]]
    run_id: str
    task: str
    created: float = field(default_factory=time.time)

    def size(self) -> int:
        """Bytes of the files the entry holds."""
        return sum(int(f["size"]) for f in self.files.values())

    @classmethod
    def parse(cls, key: str, raw: bytes) -> "Entry":
        """The entry stored as ``raw`` under ``key``; CacheMiss if it is not a whole, valid one."""
        try:
            data = json.loads(raw)
            entry = cls(str(data["key"]), str(data["stage"]), data["output"],
                        {str(n): {"size": int(f["size"]), "sha256": str(f["sha256"])} for n, f in data["files"].items()},
                        str(data["run_id"]), str(data["task"]), float(data["created"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CacheMiss(f"entry {key[:12]} is unreadable ({type(exc).__name__}: {exc})") from None
        if entry.key != key or not all(_HEX64.match(f["sha256"]) for f in entry.files.values()):
            raise CacheMiss(f"entry {key[:12]} does not describe itself")
        return entry


class _Local:
    """The cache in a local directory: temp files in ``tmp/``, renamed into place.

    Not fsynced: a file a crash left torn is a miss when read (every blob's sha256 and every
    entry's form are checked), never a wrong result, and an fsync a file cost about as much
    as a small stage."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, rel: str) -> bytes | None:
        try:
            return (self.path / rel).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, rel: str, data: bytes) -> None:
        final = self.path / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = self.path / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="cache-", dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, file_mode())
            os.replace(tmp, final)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def listing(self, folder: str) -> list[tuple[str, int, float]]:
        directory = self.path / folder
        if not directory.is_dir():
            return []
        found = []
        for item in directory.iterdir():
            try:
                stat = item.stat()
            except FileNotFoundError:
                continue
            found.append((item.name, stat.st_size, stat.st_mtime))
        return found

    def remove(self, rel: str) -> None:
        (self.path / rel).unlink(missing_ok=True)


class _Remote:
    """The cache under an fsspec URL: one object a file (an object appears whole or not at all)."""

    def __init__(self, url: str) -> None:
        from fsspec.core import url_to_fs

        self.fs, base = url_to_fs(url, use_listings_cache=False)
        self.base = base.rstrip("/")

    def read(self, rel: str) -> bytes | None:
        try:
            return self.fs.cat_file(f"{self.base}/{rel}")
        except FileNotFoundError:
            return None

    def write(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self.base}/{rel}", data)

    def listing(self, folder: str) -> list[tuple[str, int, float]]:
        try:
            items = self.fs.ls(f"{self.base}/{folder}", detail=True)
        except FileNotFoundError:
            return []
        found = []
        for item in items:
            if item.get("type") != "file":
                continue
            modified = item.get("LastModified") or item.get("mtime") or 0
            stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
            found.append((item["name"].rstrip("/").rsplit("/", 1)[-1], int(item.get("size") or 0), stamp))
        return found

    def remove(self, rel: str) -> None:
        try:
            self.fs.rm_file(f"{self.base}/{rel}")
        except FileNotFoundError:
            pass


@dataclass
class PruneReport:
    """What :meth:`CacheStore.prune` removed and kept."""

    entries_removed: int = 0
    blobs_removed: int = 0
    bytes_freed: int = 0
    entries_kept: int = 0
    bytes_kept: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON-ready form (``cache prune --json``)."""
        return asdict(self)


class CacheStore:
    """The cache of one artifacts root (a local path or an fsspec URL)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        root = normalize_root(root)
        self.location = run_location(root, CACHE_DIR_NAME)  # the one rule turning a root into a place
        """Where the cache is: a directory or a URL prefix."""
        self._io = _Remote(self.location) if is_url(root) else _Local(Path(self.location))

    def get(self, key: str) -> tuple[Entry, dict[str, bytes]]:
        """The entry of ``key`` and its files' content, each checked; CacheMiss (with the reason) if none is usable."""
        raw = self._io.read(f"entries/{key}.json")
        if raw is None:
            raise CacheMiss(f"no entry {key[:12]}")
        entry = Entry.parse(key, raw)
        contents = {}
        for name, record in entry.files.items():
            data = self._io.read(f"blobs/{record['sha256']}")
            if data is None:
                raise CacheMiss(f"entry {key[:12]}: the content of {name} is missing")
            if len(data) != record["size"] or hashlib.sha256(data).hexdigest() != record["sha256"]:
                raise CacheMiss(f"entry {key[:12]}: the content of {name} is damaged")
            contents[name] = data
        return entry, contents

    def put(self, entry: Entry, contents: dict[str, bytes]) -> None:
        """Store ``entry`` with its files' ``contents`` (name -> bytes, matching ``entry.files``)."""
        for name, record in entry.files.items():
            data = contents[name]
            if len(data) != record["size"] or hashlib.sha256(data).hexdigest() != record["sha256"]:
                raise ValueError(f"content of {name} does not match its record")
            self._io.write(f"blobs/{record['sha256']}", data)
        self._io.write(f"entries/{entry.key}.json", json.dumps(asdict(entry), sort_keys=True).encode())

    def entries(self) -> list[Entry]:
        """Every readable entry, newest first (unreadable ones are left out: they are misses)."""
        found = []
        for name, _size, _mtime in self._io.listing("entries"):
            key = name[: -len(".json")] if name.endswith(".json") else ""
            raw = self._io.read(f"entries/{name}") if _HEX64.match(key) else None
            if raw is None:
                continue
            try:
                found.append(Entry.parse(key, raw))
            except CacheMiss:
                continue
        return sorted(found, key=lambda e: e.created, reverse=True)

    def prune(self, older_than: float | None = None, max_size: int | None = None,
              now: float | None = None) -> PruneReport:
        """Remove entries created more than ``older_than`` seconds ago, then the oldest until the
        files of those left take at most ``max_size`` bytes, then every unreadable entry and every
        blob no entry names (older than :data:`BLOB_GRACE`)."""
        now = time.time() if now is None else now
        report = PruneReport()
        kept = self.entries()  # newest first
        if older_than is not None:
            report.entries_removed += self._drop([e for e in kept if now - e.created > older_than])
            kept = [e for e in kept if now - e.created <= older_than]
        blobs = {name: size for name, size, _ in self._io.listing("blobs")}

        def used(entries: list[Entry]) -> int:
            return sum(blobs.get(sha, 0) for sha in {f["sha256"] for e in entries for f in e.files.values()})

        while max_size is not None and kept and used(kept) > max_size:
            report.entries_removed += self._drop([kept.pop()])
        names = {f"{e.key}.json" for e in kept}
        for name, _size, _mtime in self._io.listing("entries"):
            if name not in names:  # unreadable, or removed above (already gone)
                self._io.remove(f"entries/{name}")
        wanted = {f["sha256"] for e in kept for f in e.files.values()}
        for name, size, mtime in self._io.listing("blobs"):
            if name not in wanted and now - mtime > BLOB_GRACE:
                self._io.remove(f"blobs/{name}")
                report.blobs_removed += 1
                report.bytes_freed += size
        report.entries_kept, report.bytes_kept = len(kept), used(kept)
        return report

    def _drop(self, entries: list[Entry]) -> int:
        for entry in entries:
            self._io.remove(f"entries/{entry.key}.json")
        return len(entries)
