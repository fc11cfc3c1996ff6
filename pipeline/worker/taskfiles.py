"""A task's artifacts checked against its run's record: the ledger as a :class:`FileBook`.

What a task writes (size and sha256 of each file) is recorded under its key with the
task's end, by the script that ends it (:meth:`Ledger.finish_task` ``files=``): before
the task can succeed and any reader downstream start. What it reads was recorded by its
upstream tasks, and comes with the task's start (:func:`start_task`): no round trip of
its own.
"""
from __future__ import annotations

from typing import Any

from pipeline.artifacts.integrity import FileDigest


class LedgerFileBook:
    """The digests of the files one task of a run reads and writes."""

    def __init__(self, upstream: dict[str, dict[str, dict[str, Any]]]) -> None:
        """``upstream``: upstream task key -> ``{file name: {size, sha256}}`` it recorded."""
        self.known = {name: FileDigest.from_dict({**record, "task": task})
                      for task, files in upstream.items() for name, record in files.items()}
        self.pending: dict[str, dict[str, Any]] = {}
        """Files this attempt wrote, to record with its end (name -> ``{size, sha256}``)."""

    def expected(self, name: str) -> FileDigest | None:
        """What file ``name`` was when its writer (an upstream task) wrote it (None: no record)."""
        return self.known.get(name)

    def written(self, name: str, digest: FileDigest) -> None:
        """Note ``digest`` as what file ``name`` now is (recorded with the task's end)."""
        self.pending[name] = {"size": digest.size, "sha256": digest.sha256}
