"""The run a tick creates, shared by the scheduled-run task and backfill.

Tick T creates the run ``tick-YYYYMMDDHHmmss`` with ``RunRequest(tick=T)``: seed
``int(T.timestamp())`` and T in every file name. The run id derives from T and the record
is created first-writer-wins, so however many times a tick is submitted (two beats, a
redelivery, a backfill) it has one run, and its canvas is sent once.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.ledger.records import Ledger
from pipeline.runs.submit import RunRequest, Submitted, ensure_submitted, submit_run
from pipeline.definition.naming import DEFAULT_N_SAMPLES
from pipeline.ledger.claims import needs_submission
from pipeline.schedule.ticks import MINUTE, tick_run_id, utc
from pipeline.settings import get_settings
from pipeline.validation import BadInput, check_artifacts_root, check_label, parse_alphas

log = logging.getLogger(__name__)

HEAL_LOOKBACK_TICKS = 10
"""Ticks before the current one that a scheduled run checks for a run recorded but never sent."""


def tick_request(tick: datetime, *, alphas: Sequence[float] | Iterable[str], artifacts_root: str | Path,
                 n_samples: int = DEFAULT_N_SAMPLES, label: str | None = None) -> RunRequest:
    """The run request of tick ``tick`` with the schedule's parameters (validated).

    ``artifacts_root``: a local path or an fsspec URL, normalized as every root is
    (:func:`pipeline.artifacts.store.normalize_root`), so a URL stays a URL. The stage
    cache is ``PIPELINE_SCHEDULE_CACHE``'s (off unless set).
    """
    parsed = parse_alphas([",".join(str(a) for a in alphas)])
    if label is not None:
        check_label(label)
    return RunRequest(alphas=parsed, artifacts_root=check_artifacts_root(artifacts_root), n_samples=int(n_samples),
                      label=label, tick=utc(tick), cache=get_settings().schedule_cache, **tick_notifications())


def tick_notifications() -> dict:
    """PIPELINE_NOTIFY and PIPELINE_NOTIFY_EVENTS for a scheduled run; a bad one is logged and
    the run goes without notifications (losing the run would be worse than its message)."""
    from pipeline.notify.destinations import configured

    try:
        return configured(get_settings())
    except BadInput as exc:
        log.error("scheduled run without notifications: %s", exc)
        return {}


def submit_tick(ledger: Ledger, request: RunRequest) -> Submitted:
    """Create (first writer wins) and send tick ``request.tick``'s run; an existing run is left as is
    unless it was never sent."""
    if request.tick is None:
        raise ValueError("a tick run needs request.tick")
    return submit_run(ledger, request, run_id=tick_run_id(request.tick))


def heal_recent(ledger: Ledger, tick: datetime, step: float = MINUTE,
                lookback: int = HEAL_LOOKBACK_TICKS) -> list[str]:
    """Send the runs of the ``lookback`` ticks before ``tick`` that were recorded but never sent.

    Returns the run ids this call sent. A claim younger than the lease is left alone.
    """
    sent = []
    for i in range(1, lookback + 1):
        run_id = tick_run_id(utc(tick) - timedelta(seconds=step * i))
        if needs_submission(ledger, run_id) and ensure_submitted(ledger, run_id):
            sent.append(run_id)
    return sent
