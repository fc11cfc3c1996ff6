"""What a backfill is asked to do, checked before anything is created (no Celery imported here).

``backfill`` on the command line and the backfill form on ``/schedule`` both build a
:class:`BackfillPlan` with :func:`plan_backfill`, so both refuse the same input with the
same line; :func:`pipeline.schedule.backfill.run_plan` then creates the runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from pipeline import validation
from pipeline.schedule import ticks
from pipeline.settings import Settings


@dataclass(frozen=True)
class BackfillPlan:
    """The ticks to backfill and the runs' parameters (None: the schedule's own)."""

    ticks: list[datetime]
    alphas: list[float] | None
    n_samples: int | None
    label: str | None
    artifacts_root: str


def plan_backfill(start_text: str, end_text: str, alphas_text: str | None, n_samples: int | None,
                  label: str | None, artifacts: str | None, settings: Settings,
                  now: datetime | None = None) -> BackfillPlan:
    """Check a backfill's input (BadInput naming the bad value) and list its ticks.

    Ticks are whole minutes from ``start_text`` to ``end_text`` inclusive (no zone: UTC),
    none in the future, at most 1440; ``label`` None: the schedule's label.
    """
    start = ticks.parse_time(start_text, "start")
    end = ticks.parse_time(end_text, "end")
    moments = ticks.ticks_between(start, end, now or datetime.now(timezone.utc))
    alphas = validation.parse_alphas([alphas_text]) if alphas_text is not None else None
    if n_samples is not None:
        validation.check_samples(n_samples)
    label = settings.schedule_label if label is None else validation.check_label(label)
    root = validation.check_artifacts_root(artifacts or settings.artifacts_root, settings.artifacts_allowed)
    return BackfillPlan(ticks=moments, alphas=alphas, n_samples=n_samples, label=label, artifacts_root=root)
