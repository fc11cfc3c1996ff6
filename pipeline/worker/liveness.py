"""Which queues live workers consume: a short-lived Redis key per worker, no broadcast.

Each worker process (through :class:`WorkerRecordStep`, a bootstep of the worker
blueprint) writes ``pipeline:workers:<node name>/<pid>`` = JSON ``{"hostname", "pid",
"queues", "seen"}`` with an expiry of ``PIPELINE_WORKER_TTL`` seconds (15), rewrites it
every ``PIPELINE_WORKER_HEARTBEAT`` seconds (5) from a daemon thread, and deletes it when
it stops. A killed worker's key expires on its own. The CLI reads the keys with SCAN and
MGET at submission: no ``inspect()`` round-trip.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import threading
import time
from typing import Any

import redis
from celery import bootsteps

from pipeline.settings import DEFAULT_QUEUE, KEY_PREFIX, Settings, get_settings

log = logging.getLogger(__name__)

WORKERS_PREFIX = f"{KEY_PREFIX}:workers:"
"""Prefix of the per-worker keys."""


def worker_key(hostname: str, pid: int) -> str:
    """The Redis key of the worker ``hostname`` running as process ``pid``."""
    return f"{WORKERS_PREFIX}{hostname}/{pid}"


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
        self.client.set(self.key, json.dumps(record), px=self.ttl_ms)

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
            self.client.delete(self.key)
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


def live_workers(client: redis.Redis) -> dict[str, list[str]]:
    """Live worker key suffix (``<node name>/<pid>``) -> the queues it consumes."""
    keys = sorted(client.scan_iter(match=f"{WORKERS_PREFIX}*", count=500))
    if not keys:
        return {}
    out: dict[str, list[str]] = {}
    for key, raw in zip(keys, client.mget(keys)):
        if raw is None:  # expired between SCAN and MGET
            continue
        try:
            out[key[len(WORKERS_PREFIX):]] = list(json.loads(raw).get("queues", []))
        except (ValueError, AttributeError):
            continue
    return out


def consumers_of(client: redis.Redis, queue: str) -> list[str]:
    """The live workers consuming ``queue``."""
    return [name for name, queues in live_workers(client).items() if queue in queues]


def unconsumed_message(client: redis.Redis, queue: str, embedded_url: str | None = None) -> str | None:
    """One line saying no live worker consumes ``queue`` (None when one does).

    ``embedded_url``: the embedded stack's Redis, whose own worker consumes the default
    queue (it may still be starting, so the default queue is not reported there); the
    suggested command then names that URL.
    """
    if embedded_url and queue == DEFAULT_QUEUE:
        return None
    if consumers_of(client, queue):
        return None
    command = f"python cli.py worker --label {shlex.quote(queue)}"
    if embedded_url:
        command = f"CELERY_BROKER_URL={embedded_url} {command}"
    return f"no live worker consumes queue {queue!r}; the run waits queued until one starts: {command}"
