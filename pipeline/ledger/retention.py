"""Retention: run records and logs expire by themselves; ``prune`` removes old ones now.

Every per-run key carries a TTL of ``PIPELINE_RETENTION_SECONDS`` (set when the run is
created and refreshed by every task transition and log line), so a run vanishes one
retention period after its last activity. The runs index (a sorted set, which cannot
expire member by member) is swept of entries whose record is gone whenever a run is
created, listed or pruned. Artifact files are never touched here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.ledger.records import Ledger
from pipeline.ledger.status import is_stuck
from pipeline.ledger.values import ACTIVE_RUN_STATES

SCAN_BATCH = 1000
"""Keys asked for per SCAN call when looking for run records missing from the index."""


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` did."""

    cutoff: float
    """Runs created before this unix time were candidates."""
    pruned: int
    """Run records deleted (with their task states, outputs, logs and index entry)."""
    kept_active: list[str]
    """Candidates left alone because they are still Pending/Running and not stuck."""
    stale_index: int
    """Index entries dropped because their record had already expired."""


def _candidates(ledger: Ledger, cutoff: float) -> list[str]:
    """Run ids created before ``cutoff``: from the index, plus records missing from it."""
    ids = list(ledger.r.zrangebyscore(ledger.runs_index, "-inf", f"({cutoff!r}"))
    known = set(ids) | set(ledger.r.zrange(ledger.runs_index, 0, -1))
    prefix = ledger.run_key("")
    for key in ledger.r.scan_iter(match=f"{prefix}*", count=SCAN_BATCH):
        run_id = key[len(prefix):]
        if ":" in run_id or run_id in known:
            continue
        created = ledger.r.hget(key, "created")
        if created and float(created) < cutoff:
            ids.append(run_id)
    return ids


def prune(ledger: Ledger, older_than: float, stuck_after: float, now: float | None = None) -> PruneResult:
    """Remove the runs created more than ``older_than`` seconds ago (records, logs, index).

    A run still Pending or Running and not stuck is kept: its tasks would find their
    record gone. A run that changes while being pruned is kept too.
    """
    now = time.time() if now is None else now
    cutoff = now - older_than
    pruned = stale = 0
    kept: list[str] = []
    for run_id in _candidates(ledger, cutoff):
        run = ledger.get_run(run_id)
        if run is not None and run.get("state") in ACTIVE_RUN_STATES and not is_stuck(run, stuck_after, now):
            kept.append(run_id)
            continue
        outcome = ledger.delete_run(run_id, run.get("updated") if run else None)
        if outcome == 1:
            pruned += 1
        elif outcome == 0:
            stale += 1
        else:
            kept.append(run_id)
    stale += ledger.forget_expired(now)
    return PruneResult(cutoff, pruned, kept, stale)
