"""Which queues live workers consume, and which code: a short-lived Redis record per worker.

Each worker process (through :class:`WorkerRecordStep`, a bootstep of the worker
blueprint) writes its record (:mod:`pipeline.ledger.workers`: the queues it consumes and
the flow-version digest of its code, registered as a version when it starts)
with an expiry of ``PIPELINE_WORKER_TTL`` seconds (15), rewrites it every
``PIPELINE_WORKER_HEARTBEAT`` seconds (5) from a daemon thread, and deletes it when it
stops. A killed worker's record expires on its own. The CLI reads the records with SCAN
and MGET at submission: no ``inspect()`` round-trip.

The same key is the worker's heartbeat for reclaiming (see :mod:`pipeline.worker.kombu_redis`):
the Redis transport records which worker holds each unacknowledged message, and a worker
whose key has expired is dead, so live workers put its messages back in their queues.
Hence the key is also written to the broker's Redis when that is another one, and a
stopping worker keeps it until it has shut down (the blueprint stops this step before
the pool has finished its tasks).

Upstream code (Celery 5.7.0; ``tests/test_upstream_pins.py``): ``bootsteps.StartStopStep``
(``create`` returns the object whose ``start``/``stop``/``terminate`` the blueprint calls) in
https://github.com/celery/celery/blob/v5.7.0/celery/bootsteps.py; the worker blueprint
taking ``app.steps["worker"]`` and ``WorkController.hostname``/``app`` in
https://github.com/celery/celery/blob/v5.7.0/celery/worker/worker.py; and
``app.amqp.queues.consume_from`` in https://github.com/celery/celery/blob/v5.7.0/celery/app/amqp.py.
Loaded only by name: ``app.steps["worker"].add("pipeline.worker.liveness:WorkerRecordStep")``
in pipeline/celery_app.py.
"""
from __future__ import annotations

import atexit
import logging
import os
import shlex
import threading
import time
from typing import TYPE_CHECKING, Any

import redis
from celery import bootsteps, signals

from pipeline.ledger import versions
from pipeline.ledger.workers import delete_worker, worker_key, write_worker
from pipeline.settings import DEFAULT_QUEUE, Settings, get_settings

if TYPE_CHECKING:
    from pipeline.ledger.records import Ledger

log = logging.getLogger(__name__)

_current: "WorkerRecord | None" = None


def current_record() -> "WorkerRecord | None":
    """The record of the worker running in this process (None outside a worker)."""
    return _current


def current_owner() -> str | None:
    """This worker's id, ``<node name>/<pid>`` (its key's suffix), or None outside a worker."""
    return _current.owner if _current is not None else None


class WorkerRecord:
    """Writes, refreshes and deletes one worker's record of the queues it consumes."""

    def __init__(self, clients: "redis.Redis | list[redis.Redis]", hostname: str, queues,
                 settings: Settings, digest: str = "", pool: str | None = None, concurrency: int | None = None) -> None:
        """``clients``: the Redis (or several: the ledger's and the broker's) to write to;
        ``queues``: a callable returning the queue names consumed now (they can change);
        ``digest``: the flow-version digest of the code this worker runs."""
        self.clients = clients if isinstance(clients, list) else [clients]
        self.client = self.clients[0]
        self.digest = digest
        self.pool, self.concurrency = pool, concurrency
        """The worker's pool and its most processes or threads: the labels page shows them."""
        self.hostname = hostname
        self.pid = os.getpid()
        self.owner = f"{hostname}/{self.pid}"
        self.key = worker_key(hostname, self.pid)
        self.queues = queues
        self.ttl = max(1.0, settings.worker_record_ttl)
        self.ttl_ms = int(self.ttl * 1000)
        self.interval = max(0.05, settings.worker_heartbeat)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._streak_since: float | None = None
        self._last_ok: float | None = None
        self._retiring = False

    def write(self) -> None:
        """Write the record now, with a fresh expiry."""
        record = {"hostname": self.hostname, "pid": self.pid, "queues": sorted(self.queues()),
                  "digest": self.digest, "pool": self.pool, "concurrency": self.concurrency, "seen": time.time()}
        for client in self.clients:
            write_worker(client, self.key, record, self.ttl_ms)
        self._written(time.monotonic())

    def _written(self, now: float) -> None:
        # A gap long enough for other workers' keys to have expired meanwhile (Redis away,
        # this host cut off) starts a new streak: see healthy_for.
        if self._last_ok is None or now - self._last_ok > self.ttl - self.interval:
            self._streak_since = now
        self._last_ok = now

    def healthy_for(self) -> float:
        """Seconds this record has been written without a failure or a long gap (0 if not now).

        A reclaimer waits for a full ``ttl`` of it: every live worker has then rewritten its
        own key too, so one whose key expired while Redis was away is not taken for dead.
        """
        if self._streak_since is None:
            return 0.0
        return time.monotonic() - self._streak_since

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.write()
            except Exception as exc:  # a Redis blip must not kill the heartbeat
                self._streak_since = None
                log.warning("could not refresh worker record %s: %s", self.key, exc)

    def start(self) -> None:
        """Register this code's flow version, write the record and start refreshing it."""
        try:
            if self.digest:
                versions.register(self.client, self.digest)  # so `flows` can number it
            self.write()
        except Exception as exc:
            log.warning("could not write worker record %s: %s", self.key, exc)
        self._thread = threading.Thread(target=self._loop, name="pipeline-worker-record", daemon=True)
        self._thread.start()

    def retire(self) -> None:
        """Stop refreshing and delete the record (best effort: it expires anyway)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for client in self.clients:
            try:
                delete_worker(client, self.key)
            except Exception as exc:
                log.warning("could not delete worker record %s: %s", self.key, exc)

    def stop(self) -> None:
        """Retire the record once the worker has shut down (Celery's ``worker_shutdown``, else
        at exit), not now: the worker blueprint stops this step before its pool has finished
        the running tasks, and while they run their messages must not look like a dead worker's."""
        if not self._retiring:
            self._retiring = True
            signals.worker_shutdown.connect(self._on_shutdown, weak=False)
            atexit.register(self.retire)

    def _on_shutdown(self, **_: Any) -> None:
        self.retire()

    terminate = stop


def pool_and_concurrency(worker: Any) -> tuple[str | None, int | None]:
    """The pool name (``prefork``, ``threads``, ``solo``, ...) and most slots of a Celery worker:
    its ``--autoscale`` maximum, else ``--concurrency``."""
    module = getattr(getattr(worker, "pool_cls", None), "__module__", "") or ""
    name = module.rsplit(".", 1)[-1] or None
    autoscale = getattr(worker, "autoscale", None)
    most = max(autoscale) if autoscale else getattr(worker, "concurrency", None)
    return {"thread": "threads"}.get(name, name), int(most) if most else None


class WorkerRecordStep(bootsteps.StartStopStep):
    """Worker bootstep keeping this worker's :class:`WorkerRecord` while it runs."""

    label = "pipeline worker record"

    def create(self, worker: Any) -> WorkerRecord:
        """Build the record for ``worker``; started by the blueprint before the consumer."""
        global _current
        from pipeline.redis_conn import shared_client
        from pipeline.settings import ledger_url

        app = worker.app
        url = ledger_url(app.conf)
        urls = [url]
        broker = app.conf.broker_url or ""
        if broker.startswith(("redis://", "rediss://", "unix://")) and broker != url:
            urls.append(broker)  # the reclaimers look for it next to the unacked messages

        def queues() -> list[str]:
            return list(app.amqp.queues.consume_from.keys())

        # Here, before the pool starts: prefork children inherit the digest of the code
        # loaded now, not of files edited later on disk.
        digest = versions.current_digest()
        _current = WorkerRecord([shared_client(u) for u in urls], worker.hostname, queues, get_settings(), digest,
                                *pool_and_concurrency(worker))
        return _current


def consumers_of(ledger: Ledger, queue: str, digest: str | None = None) -> list[str]:
    """The live workers consuming ``queue`` (with ``digest``: only those running that flow version)."""
    if digest is None:
        return [name for name, queues in ledger.live_workers().items() if queue in queues]
    return [name for name, record in ledger.worker_records().items()
            if queue in record["queues"] and record.get("digest") == digest]


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


def version_message(ledger: Ledger, queue: str, digest: str, embedded_url: str | None = None) -> str | None:
    """One line saying no live worker of ``queue`` runs the flow version ``digest`` (None
    when one does, or when none consumes the queue at all: :func:`unconsumed_message`)."""
    records = [r for r in ledger.worker_records().values() if queue in r["queues"]]
    if not records or any(r.get("digest") == digest for r in records):
        return None
    theirs = sorted({r.get("digest") or "" for r in records})
    named = ", ".join(versions.version_name(ledger.version_of(d), d) if d else "an unknown version" for d in theirs)
    ours = "this code's" if digest == versions.current_digest() else "the run's"
    if embedded_url and queue == DEFAULT_QUEUE and ours == "this code's":
        fix = "python cli.py stop, then submit again (the embedded worker starts anew from this code)"
    else:
        fix = f"start a worker from {ours} code: python cli.py worker --label {shlex.quote(queue)}"
    return (f"no live worker of queue {queue!r} runs {ours} flow "
            f"{versions.version_name(ledger.version_of(digest), digest)} (they run {named}); "
            f"the run waits queued until one does: {fix}")
