"""A task's artifacts checked against its run's record: the ledger as a :class:`FileBook`.

What a task writes (size, sha256, the task's key) is recorded in the run record with the
task's end, in the same round trip (:meth:`Ledger.finish_task` ``files=``), so before the
task can succeed and any reader downstream start. What it reads is looked up there.
"""
from __future__ import annotations

from typing import Any

from pipeline.artifacts.integrity import FileDigest
from pipeline.ledger.records import Ledger


class LedgerFileBook:
    """The digests of run ``run_id``'s files, kept in its ledger record."""

    def __init__(self, book: Ledger, run_id: str) -> None:
        self.book = book
        self.run_id = run_id
        self.pending: dict[str, dict[str, Any]] = {}
        """Files this attempt wrote, to record with its end (name -> ``{size, sha256, task}``)."""

    def expected(self, name: str) -> FileDigest | None:
        """What file ``name`` was when written (None: no record)."""
        record = self.pending.get(name) or self.book.file_record(self.run_id, name)
        return None if record is None else FileDigest.from_dict(record)

    def written(self, name: str, digest: FileDigest) -> None:
        """Note ``digest`` as what file ``name`` now is (recorded with the task's end)."""
        self.pending[name] = digest.as_dict()
