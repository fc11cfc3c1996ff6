"""Which queues live workers consume: a short-lived Redis record per worker, no broadcast.

Each worker process (through :class:`WorkerRecordStep`, a bootstep of the worker
blueprint) writes its record (:mod:`pipeline.ledger.workers`: the queues it consumes)
with an expiry of ``PIPELINE_WORKER_TTL`` seconds (15), rewrites it every
``PIPELINE_WORKER_HEARTBEAT`` seconds (5) from a daemon thread, and deletes it when it
stops. A killed worker's record expires on its own. The CLI reads the records with SCAN
and MGET at submission: no ``inspect()`` round-trip.
"""
from __future__ import annotations

import logging
import os
import shlex
import threading
import time
from typing import TYPE_CHECKING, Any

import redis
from celery import bootsteps

from pipeline.ledger.workers import delete_worker, worker_key, write_worker
from pipeline.settings import DEFAULT_QUEUE, Settings, get_settings

if TYPE_CHECKING:
    from pipeline.ledger.records import Ledger

log = logging.getLogger(__name__)

class WorkerRecord:
    """Writes, refreshes and deletes one worker's record of the queues it consumes."""

    def __init__(self, client: redis.Redis, hostname: str, queues, settings: Settings) -> None:
        """``queues``: a callable returning the queue names consumed now (they can change)."""
        self.client = client
        self.hostname = hostname
        self.pid = os.getpid()
        self.key = worker_key(hostname, self.pid)
        self.queues = queues
        self.ttl_ms = max(1000, int(settings.worker_record_ttl * 1000))
        self.interval = max(0.05, settings.worker_heartbeat)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self) -> None:
        """Write the record now, with a fresh expiry."""
        record = {"hostname": self.hostname, "pid": self.pid, "queues": sorted(self.queues()), "seen": time.time()}
        write_worker(self.client, self.key, record, self.ttl_ms)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.write()
            except Exception as exc:  # a Redis blip must not kill the heartbeat
                log.warning("could not refresh worker record %s: %s", self.key, exc)

    def start(self) -> None:
        """Write the record and start refreshing it."""
        try:
            self.write()
        except Exception as exc:
            log.warning("could not write worker record %s: %s", self.key, exc)
        self._thread = threading.Thread(target=self._loop, name="pipeline-worker-record", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing and delete the record (best effort: it expires anyway)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            delete_worker(self.client, self.key)
        except Exception as exc:
            log.warning("could not delete worker record %s: %s", self.key, exc)

    terminate = stop


class WorkerRecordStep(bootsteps.StartStopStep):
    """Worker bootstep keeping this worker's :class:`WorkerRecord` while it runs."""

    label = "pipeline worker record"

    def create(self, worker: Any) -> WorkerRecord:
        """Build the record for ``worker``; started by the blueprint before the consumer."""
        from pipeline.redis_conn import shared_client

        app = worker.app
        url = app.conf.result_backend or app.conf.broker_url

        def queues() -> list[str]:
            return list(app.amqp.queues.consume_from.keys())

        return WorkerRecord(shared_client(url), worker.hostname, queues, get_settings())


def consumers_of(ledger: Ledger, queue: str) -> list[str]:
    """The live workers consuming ``queue``."""
    return [name for name, queues in ledger.live_workers().items() if queue in queues]


def unconsumed_message(ledger: Ledger, queue: str, embedded_url: str | None = None) -> str | None:
    """One line saying no live worker consumes ``queue`` (None when one does).

    ``embedded_url``: the embedded stack's Redis, whose own worker consumes the default
    queue (it may still be starting, so the default queue is not reported there); the
    suggested command then names that URL.
    """
    if embedded_url and queue == DEFAULT_QUEUE:
        return None
    if consumers_of(ledger, queue):
        return None
    command = f"python cli.py worker --label {shlex.quote(queue)}"
    if embedded_url:
        command = f"CELERY_BROKER_URL={embedded_url} {command}"
    return f"no live worker consumes queue {queue!r}; the run waits queued until one starts: {command}"
