"""Pages of the runs index, newest first, optionally filtered by state, label or flow version.

Without filters a page is one ZREVRANGE and one pipelined HGETALL of its rows, however
many runs are recorded. With filters the index is read in batches of ids, each batch's
three filter fields in one pipelined round trip, until the page is full.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.ledger.records import Ledger

BATCH = 500
"""Run ids whose filter fields are read per round trip when filtering."""


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list: all when every field is None."""

    state: str | None = None
    label: str | None = None
    version: int | None = None

    @property
    def empty(self) -> bool:
        return self.state is None and self.label is None and self.version is None

    def matches(self, state: str | None, label: str | None, version: str | None) -> bool:
        """True when a run with these stored fields passes the filter."""
        return ((self.state is None or state == self.state)
                and (self.label is None or (label or "") == self.label)
                and (self.version is None or str(version or "") == str(self.version)))


def _records(ledger: Ledger, ids: list[str]) -> list[dict[str, Any]]:
    pipe = ledger.r.pipeline(transaction=False)
    for run_id in ids:
        pipe.hgetall(ledger.run_key(run_id))
    return [raw for raw in pipe.execute() if raw]


def page_of_runs(ledger: Ledger, offset: int, limit: int, where: RunFilter = RunFilter()) -> tuple[list[dict], bool]:
    """Up to ``limit`` run records after skipping ``offset`` matching ones, newest first, and
    whether more match. Index entries whose record has expired are skipped."""
    if where.empty:
        ids = ledger.r.zrevrange(ledger.runs_index, offset, offset + limit)
        return _records(ledger, ids[:limit]), len(ids) > limit
    matched: list[str] = []
    start = 0
    while len(matched) <= offset + limit:
        ids = ledger.r.zrevrange(ledger.runs_index, start, start + BATCH - 1)
        if not ids:
            break
        pipe = ledger.r.pipeline(transaction=False)
        for run_id in ids:
            pipe.hmget(ledger.run_key(run_id), "state", "label", "version")
        for run_id, (state, label, version) in zip(ids, pipe.execute()):
            if state is not None and where.matches(state, label, version):
                matched.append(run_id)
        start += BATCH
    return _records(ledger, matched[offset:offset + limit]), len(matched) > offset + limit
