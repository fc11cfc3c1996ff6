"""The sender: every worker delivers the notifications that are due, from a thread of its own.

Each :data:`interval <pipeline.settings.Settings.notify_interval>` it claims the due
deliveries atomically (:func:`pipeline.ledger.notifications.claim_due`: a lease, so two
workers never send one at once, and a sender that dies mid-send leaves it to another once
the lease runs out: at least once), sends each (:mod:`pipeline.notify.delivery`) and
records the outcome. A failed attempt worth retrying is due again after a doubling backoff
(``PIPELINE_NOTIFY_BACKOFF``, at most ``PIPELINE_NOTIFY_MAX_BACKOFF``, or the receiver's
``Retry-After``) until ``PIPELINE_NOTIFY_MAX_AGE`` after its event; then it is given up.
It also runs the stuck check over the active runs (:func:`check_stuck`), so a stalled
run is told even when nobody waits on it, and the lost-message check
(:class:`pipeline.worker.lost.LostCheck`, every few seconds on a Redis broker), so a run
whose message was lost between Redis and a worker is sent again. Nothing here runs
inside a stage's task, and nothing here can fail a run: every error is logged and recorded.

Loaded only by name: ``app.steps["worker"].add("pipeline.notify.sender:NotifySenderStep")``
in pipeline/celery_app.py (a ``bootsteps.StartStopStep``, as pipeline/worker/liveness.py).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any


from celery import bootsteps

from pipeline.ledger import notifications as book
from pipeline.ledger.records import Ledger
from pipeline.ledger.status import is_stuck
from pipeline.ledger.values import with_params
from pipeline.settings import Settings, get_settings

log = logging.getLogger(__name__)

STUCK_SCAN_RUNS = 200
"""How many of the newest runs each stuck check looks at."""

STUCK_CHECK_EVERY = 10.0
"""Most seconds between two stuck checks of one sender (fewer when ``PIPELINE_STUCK_AFTER`` is short)."""


def next_delay(attempts: int, base: float, cap: float, retry_after: float | None) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: doubling from ``base`` up to
    ``cap``, or the receiver's ``Retry-After`` when it asks for longer."""
    backoff = min(cap, base * 2 ** max(0, attempts - 1))
    return max(backoff, retry_after or 0.0)


class Sender:
    """Claims, sends and records due deliveries in the ledger's Redis."""

    def __init__(self, ledger: Ledger, settings: Settings) -> None:
        self.ledger = ledger
        self.deliveries = ledger.notifications
        self.settings = settings
        self.lease = settings.notify_timeout * 3 + 30  # longer than any one attempt takes

    def send_due(self) -> int:
        """Send every delivery due now; return how many attempts were made."""
        ids = self.deliveries.claim_due(self.lease)
        for delivery_id in ids:
            self.send_one(delivery_id)
        return len(ids)

    def send_one(self, delivery_id: str) -> None:
        """One attempt of ``delivery_id``, its outcome recorded (never raises)."""
        from pipeline.notify.delivery import Outcome, attempt

        row: dict[str, Any] | None = None
        try:
            row = self.deliveries.get(delivery_id)
            if row is None or row.get("status") != book.PENDING:
                self.deliveries.drop_due(delivery_id)
                return
            body = row.get("body") or self.deliveries.keep_body(delivery_id, self.build_body(row))
            outcome = attempt(row["url"], row["event_id"], body, self.settings.webhook_secret,
                              self.settings.notify_timeout)
        except Exception as exc:  # a bug or a Redis blip here must not stop the loop
            log.exception("notification %s: attempt failed", delivery_id)
            outcome = Outcome(False, True, f"{type(exc).__name__}: {exc}")
        self.record(delivery_id, row or {}, outcome)

    def build_body(self, row: dict[str, Any]) -> str:
        """The JSON body of ``row``'s event (see :mod:`pipeline.notify.events`)."""
        import json

        from pipeline.notify.events import build_event

        return json.dumps(build_event(self.ledger, row, self.settings), sort_keys=True)

    def record(self, delivery_id: str, row: dict[str, Any], outcome) -> None:
        """Record ``outcome``: delivered, due again later, or given up."""
        attempts = int(row.get("attempts") or 0) + 1
        if outcome.delivered:
            self.deliveries.record_attempt(delivery_id, book.DELIVERED)
            log.info("notification %s (%s of run %s) delivered", delivery_id, row.get("event"), row.get("run_id"))
            return
        next_at = time.time() + next_delay(attempts, self.settings.notify_backoff, self.settings.notify_max_backoff,
                                            outcome.retry_after)
        created = row.get("created")  # unknown when the attempt could not even read its row: retry, never give up
        too_old = bool(created) and next_at - float(created) > self.settings.notify_max_age
        if outcome.retry and not too_old:
            self.deliveries.record_attempt(delivery_id, book.PENDING, outcome.error, next_at)
            log.warning("notification %s: %s; next attempt in %.0f s", delivery_id, outcome.error,
                        next_at - time.time())
        else:
            self.deliveries.record_attempt(delivery_id, book.FAILED, outcome.error)
            log.warning("notification %s given up after %d attempts: %s", delivery_id, attempts, outcome.error)

    def check_stuck(self) -> int:
        """Queue ``run.stuck`` for each newly stuck active run (once per stuck episode); return how many."""
        queued = 0
        for run in self.ledger.list_runs(STUCK_SCAN_RUNS):
            if run.get("notify") and is_stuck(with_params(run), self.settings.stuck_after):
                queued += self.deliveries.mark_stuck(self.ledger.run_key(run["id"]), run.get("updated") or "",
                                          self.ledger.ttl)
        return queued


class SenderThread:
    """Runs a :class:`Sender` every ``PIPELINE_NOTIFY_INTERVAL`` seconds in a daemon thread."""

    def __init__(self, ledger_url: str, settings: Settings, broker_url: str | None = None) -> None:
        self.url = ledger_url
        self.broker_url = broker_url
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        from pipeline.ledger.records import shared_ledger
        from pipeline.worker.lost import check_every

        ledger = shared_ledger(self.url)
        sender = Sender(ledger, self.settings)
        lost = self._lost_check(ledger)
        every = min(STUCK_CHECK_EVERY, max(self.settings.notify_interval, self.settings.stuck_after / 4))
        lost_every = check_every(self.settings)
        checked = looked = 0.0
        while not self._stop.wait(max(0.05, self.settings.notify_interval)):
            try:
                if lost is not None and time.monotonic() - looked >= lost_every:
                    looked = time.monotonic()
                    lost.check()
                if time.monotonic() - checked >= every:
                    checked = time.monotonic()
                    sender.check_stuck()
                sender.send_due()
            except Exception as exc:  # Redis away: try again next round
                log.warning("notification sender: %s", exc)

    def _lost_check(self, ledger: Ledger):
        """The lost-message check of this worker, or None (disabled, or not a Redis broker)."""
        from pipeline.brokers import is_redis
        from pipeline.worker.lost import LostCheck

        if self.settings.lost_after <= 0 or not is_redis(self.broker_url):
            return None
        from pipeline.redis_conn import shared_client

        return LostCheck(ledger, shared_client(self.broker_url), self.settings)

    def start(self) -> None:
        """Start sending."""
        self._thread = threading.Thread(target=self._loop, name="pipeline-notify-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current round (pending deliveries stay in Redis for the next sender)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.notify_timeout + 2)

    terminate = stop


class NotifySenderStep(bootsteps.StartStopStep):
    """Worker bootstep running this worker's :class:`SenderThread`."""

    label = "pipeline notification sender"

    def create(self, worker: Any) -> SenderThread:
        """The sender for ``worker``'s ledger; the blueprint starts and stops it."""
        from pipeline.settings import ledger_url

        return SenderThread(ledger_url(worker.app.conf), get_settings(), worker.app.conf.broker_url)
