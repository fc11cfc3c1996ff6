"""``/labels`` (and ``/api/labels``): each label's queue, its live workers, its waiting messages,
and a warning where runs wait on a queue no live worker consumes.

Live workers come from their records in Redis (``pipeline/ledger/workers.py``, the ones
a submission checks), joined by node name with what Flower's inspector knows of their
pool and concurrency; waiting messages from Flower's own broker client (Redis priority
lists; RabbitMQ's by a passive ``queue.declare``); waiting runs from the runs index (Pending and
Running runs, newest :data:`ACTIVE_SCAN` of each).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from pipeline.brokers import amqp_queue_counts, is_amqp
from pipeline.ledger.listing import RunFilter, page_of_runs
from pipeline.ledger.values import RunState
from pipeline.settings import DEFAULT_QUEUE
from pipeline.web.base import PipelineHandler, ledger, settings

log = logging.getLogger(__name__)

ACTIVE_SCAN = 1000
"""Most Pending (and Running) runs looked at for the waiting-runs warning."""


def declared_queues() -> dict[str, str]:
    """Queue -> the environment (workers/environments.py) that declares it, when importable."""
    try:
        from workers.environments import ENVIRONMENTS
    except ImportError:
        return {}
    return {queue: env.name for env in ENVIRONMENTS for queue in env.queues}


def read_labels() -> tuple[dict[str, dict], dict[str, list[str]]]:
    """(live worker records by name, queue -> ids of its Pending/Running runs), from Redis.

    Each record gains ``version``: the number of the flow version its code's digest is.
    """
    book = ledger()
    records = book.worker_records()
    numbers = {d: book.version_of(d) for d in {r.get("digest") for r in records.values()} if d}
    for record in records.values():
        record["version"] = numbers.get(record.get("digest"))
    waiting: dict[str, list[str]] = {}
    for state in (RunState.PENDING, RunState.RUNNING):
        runs, _more = page_of_runs(book, 0, ACTIVE_SCAN, RunFilter(state=state))
        for run in runs:
            waiting.setdefault(run.get("queue") or DEFAULT_QUEUE, []).append(run["id"])
    return records, waiting


def pool_of(info: dict[str, Any]) -> tuple[str | None, int | None]:
    """(pool, concurrency) from a worker's ``inspect stats`` reply, as Flower caches it."""
    pool = (info.get("stats") or {}).get("pool") or {}
    implementation = str(pool.get("implementation") or "")
    name = implementation.split(":")[0].rsplit(".", 1)[-1] or None
    return {"thread": "threads"}.get(name, name), pool.get("max-concurrency")


def labels_document(records: dict[str, dict], waiting: dict[str, list[str]], lengths: dict[str, int | None],
                    inspected: dict[str, dict], now: float) -> list[dict[str, Any]]:
    """One entry a queue: declared by, live workers (pool, concurrency, seconds since their
    heartbeat), waiting messages, active runs, and a warning when runs wait with no consumer."""
    declared = declared_queues()
    queues = sorted({DEFAULT_QUEUE, *declared, *waiting, *(q for r in records.values() for q in r["queues"])})
    out = []
    for queue in queues:
        workers = []
        for name, record in sorted(records.items()):
            if queue in record["queues"]:
                pool, concurrency = pool_of(inspected.get(name.split("/")[0], {}))
                if pool is None:  # Flower has no inspect reply of it (yet): the worker's own record says
                    pool, concurrency = record.get("pool"), record.get("concurrency")
                seen = record.get("seen")
                workers.append({"worker": name, "pool": pool, "concurrency": concurrency,
                                "heartbeat_age": round(now - seen, 1) if seen else None,
                                "version": record.get("version"), "digest": record.get("digest")})
        runs = waiting.get(queue, [])
        warning = None
        if runs and not workers:
            warning = (f"{len(runs)} run(s) wait on queue {queue!r} and no live worker consumes it: "
                       f"python cli.py worker --label {queue}")
        out.append({"queue": queue, "environment": declared.get(queue), "workers": workers,
                    "waiting_messages": lengths.get(queue), "active_runs": runs, "warning": warning})
    return out


class LabelsMixin(PipelineHandler):
    def broker(self):
        """Flower's broker client, for the configured broker URL (Flower's own ``get_broker``
        derives the URL from the connection, whose scheme is our kombu transport's class path)."""
        from flower.utils.broker import Broker

        return Broker(settings().broker_url, http_api=self.application.options.broker_api,
                      broker_options=self.capp.conf.broker_transport_options,
                      broker_use_ssl=self.capp.conf.broker_use_ssl)

    async def waiting_messages(self, queues: list[str]) -> dict[str, int | None]:
        """Queue -> messages waiting in it: RabbitMQ's by a passive queue.declare (no
        management plugin needed), other brokers' by Flower's broker client."""
        url = settings().broker_url
        if is_amqp(url):
            counts = await self.off_loop(amqp_queue_counts, url, queues)
            return {queue: count[0] if count else 0 for queue, count in counts.items()}
        return {entry["name"]: entry.get("messages") for entry in await self.broker().queues(queues)}

    async def document(self) -> list[dict[str, Any]]:
        records, waiting = await self.off_loop(read_labels)
        inspected = self.application.workers
        if any(name.split("/")[0] not in inspected for name in records):
            try:  # a worker Flower has not inspected yet: ask (Flower's inspect timeout, 1 s)
                await self.application.update_workers()
            except Exception:  # the page still shows what the records say
                pass
        queues = sorted({DEFAULT_QUEUE, *declared_queues(), *waiting,
                         *(q for r in records.values() for q in r["queues"])})
        lengths: dict[str, int | None] = {}
        try:
            lengths = await self.waiting_messages(queues)
        except Exception as exc:  # a broker Flower cannot count (or one unreachable now): shown as '-'
            log.warning("could not count the queues' waiting messages: %r", exc)
        return labels_document(records, waiting, lengths, dict(self.application.workers), time.time())


class LabelsPage(LabelsMixin):
    """``GET /labels``."""

    async def get(self) -> None:
        self.render("pipeline/labels.html", labels=await self.document())


class LabelsApi(LabelsMixin):
    """``GET /api/labels``: the same, as JSON."""

    async def get(self) -> None:
        self.write_json(await self.document())
