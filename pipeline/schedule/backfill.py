"""Backfill: create the runs the schedule would have created for past ticks.

Every tick between start and end (inclusive, whole minutes, UTC) gets the run the
schedule would have given it with the same parameters (:func:`pipeline.schedule.tick_runs.tick_request`,
:func:`pipeline.schedule.tick_runs.submit_tick`); a tick that already has a run is skipped (and sent,
if it was recorded but never sent). Running the same backfill twice creates nothing new.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Sequence

from pipeline.ledger.records import Ledger
from pipeline.schedule.tick_runs import submit_tick, tick_request
from pipeline.schedule.ticks import iso_tick


@dataclass
class BackfillReport:
    """Run ids created by this backfill and those whose tick already had a run."""

    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    first: datetime | None = None
    last: datetime | None = None

    def document(self) -> dict:
        """The ``--json`` object."""
        return {
            "start": iso_tick(self.first) if self.first else None,
            "end": iso_tick(self.last) if self.last else None,
            "ticks": len(self.created) + len(self.skipped),
            "created": len(self.created),
            "skipped": len(self.skipped),
            "created_runs": self.created,
            "skipped_runs": self.skipped,
        }

    def summary(self) -> str:
        """One line: the span and the counts."""
        span = f"{iso_tick(self.first)} .. {iso_tick(self.last)}" if self.first else "no ticks"
        n = len(self.created) + len(self.skipped)
        return (f"backfill {span}: {n} tick{'' if n == 1 else 's'}, {len(self.created)} created, "
                f"{len(self.skipped)} skipped (already had a run)")


def backfill(ledger: Ledger, ticks: Sequence[datetime], *, alphas: Sequence[float], artifacts_root: str | Path,
             n_samples: int, label: str | None = None) -> BackfillReport:
    """Create the run of every tick in ``ticks`` that has none; report created and skipped ids."""
    requests = [tick_request(t, alphas=alphas, artifacts_root=artifacts_root, n_samples=n_samples, label=label)
                for t in ticks]  # validate everything before creating anything
    report = BackfillReport(first=ticks[0] if ticks else None, last=ticks[-1] if ticks else None)
    for request in requests:
        submitted = submit_tick(ledger, request)
        (report.created if submitted.created else report.skipped).append(submitted.run_id)
    return report


def run_plan(ledger: Ledger, plan) -> BackfillReport:
    """Backfill what :func:`pipeline.schedule.backfill_plan.plan_backfill` checked (schedule's defaults filled in)."""
    import beat_schedule

    alphas = beat_schedule.SCHEDULED_ALPHAS if plan.alphas is None else plan.alphas
    n_samples = beat_schedule.SCHEDULED_N_SAMPLES if plan.n_samples is None else plan.n_samples
    return backfill(ledger, plan.ticks, alphas=alphas, artifacts_root=plan.artifacts_root, n_samples=n_samples,
                    label=plan.label)
