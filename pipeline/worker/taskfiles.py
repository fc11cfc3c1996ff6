"""A task's artifacts checked against its run's record: the ledger as a :class:`FileBook`.

What a task writes is recorded in the run record (size, sha256, the task's key) as soon as
the file is in place, before the task can succeed, so every reader downstream finds it.
"""
from __future__ import annotations

from pipeline.artifacts.integrity import FileDigest
from pipeline.ledger.records import Ledger


class LedgerFileBook:
    """The digests of run ``run_id``'s files, kept in its ledger record."""

    def __init__(self, book: Ledger, run_id: str) -> None:
        self.book = book
        self.run_id = run_id

    def expected(self, name: str) -> FileDigest | None:
        """What the run record says file ``name`` was when written (None: no record)."""
        record = self.book.file_record(self.run_id, name)
        return None if record is None else FileDigest.from_dict(record)

    def written(self, name: str, digest: FileDigest) -> None:
        """Record ``digest`` as what file ``name`` now is."""
        self.book.record_file(self.run_id, name, digest.as_dict())
