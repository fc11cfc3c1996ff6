"""The task beat sends each tick: ``pipeline.scheduled_run`` turns tick T into run ``tick-<T>``.

It runs in a worker, like the stages: the run's artifacts root is the worker's
``PIPELINE_ARTIFACTS``. However often it runs for one tick (two beats, a redelivery),
the run is created once (first writer wins) and its canvas sent once (an atomic claim).
It also sends the runs of the last few ticks that were recorded but never sent (a crash
between the two), since their own messages may have expired by now.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Sequence

import redis
from celery import Task

from pipeline.celery_app import app
from pipeline.ledger.records import Ledger, shared_ledger
from pipeline.settings import TUTORIAL_ALPHAS, get_settings, ledger_url
from pipeline.definition.naming import DEFAULT_N_SAMPLES
from pipeline.schedule.tick_runs import heal_recent, submit_tick, tick_request
from pipeline.schedule.ticks import MINUTE, SCHEDULED_TASK, floor_tick, iso_tick, utc

log = logging.getLogger(__name__)


def _ledger() -> Ledger:
    return shared_ledger(ledger_url(app.conf))


def run_tick(
    ledger: Ledger,
    tick: datetime,
    alphas: Sequence[float],
    *,
    n_samples: int = DEFAULT_N_SAMPLES,
    label: str | None = None,
    step: float = MINUTE,
) -> dict:
    """Create and send tick ``tick``'s run (idempotent); heal recent unsent ones. Returns a summary.

    While the schedule is paused (``schedule pause``, or the switch on /schedule) the tick
    creates no run and sends nothing; it is only remembered as paused.
    """
    from pipeline.ledger import schedule_switch

    settings = get_settings()
    if schedule_switch.paused_since(ledger) is not None:
        log.info("tick %s: the schedule is paused, no run", iso_tick(utc(tick)))
        schedule_switch.record_tick(ledger, iso_tick(utc(tick)), {"run_id": None, "paused": True})
        return {"run_id": None, "created": False, "healed": [], "paused": True}
    request = tick_request(tick, alphas=alphas, artifacts_root=settings.artifacts_root,
                           n_samples=n_samples, label=label)
    submitted = submit_tick(ledger, request)
    healed = heal_recent(ledger, request.tick, step)
    log.info("tick %s: run %s %s%s", iso_tick(request.tick), submitted.run_id,
             "created" if submitted.created else "already recorded",
             f"; sent unsent runs {', '.join(healed)}" if healed else "")
    schedule_switch.record_tick(ledger, iso_tick(request.tick), {"run_id": submitted.run_id,
                                                                 "created": submitted.created, "paused": False})
    return {"run_id": submitted.run_id, "created": submitted.created, "healed": healed}


@app.task(
    bind=True,
    name=SCHEDULED_TASK,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=True,
    max_retries=5,
    # unlike the stage tasks, a tick keeps its Celery result (once a minute): the run it
    # made, or REVOKED when its message expired before a worker took it
    ignore_result=False,
)
def scheduled_run(
    self: Task,
    tick: str | None = None,
    alphas: Sequence[float | str] = TUTORIAL_ALPHAS,
    n_samples: int = DEFAULT_N_SAMPLES,
    label: str | None = None,
    step: float = MINUTE,
) -> dict:
    """Create the run of ``tick`` (ISO-8601, from :class:`~pipeline.schedule.scheduler.TickScheduler`).

    Without a tick (a send that did not go through the tick scheduler) the current grid
    point is used, with a warning.
    """
    if tick:
        moment = utc(datetime.fromisoformat(tick))
    else:
        moment = floor_tick(datetime.now(timezone.utc), step)
        log.warning("scheduled_run without a tick: using %s (start beat with python cli.py beat)", iso_tick(moment))
    return run_tick(_ledger(), moment, alphas, n_samples=n_samples, label=label, step=step)
