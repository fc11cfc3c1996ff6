"""At worker start: warn when the run record's Redis would lose it on a restart, or evict it.

A Redis that persists nothing (``appendonly no`` and no ``save`` points) comes back empty
after a restart: every run record, chord counter and queued message is gone, and the
runs that were in flight can never finish (docs/reliability.md). One with an eviction
policy drops keys when full. The worker says so once, in its log, when it starts. A
managed Redis may refuse ``CONFIG`` (renamed or forbidden): then nothing is said.
"""
from __future__ import annotations

import logging
from typing import Any

import redis
from celery import bootsteps

log = logging.getLogger(__name__)


def _config(client: redis.Redis, name: str) -> str | None:
    """``CONFIG GET name`` as text, or None when refused or unknown."""
    try:
        value = client.config_get(name).get(name)
    except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError):
        return None
    if isinstance(value, bytes):
        value = value.decode()
    return value


def persistence_warnings(client: redis.Redis, where: str, holds_queues: bool = True) -> list[str]:
    """One line for each way Redis at ``where`` can lose run records (none if CONFIG is refused).

    ``holds_queues``: this Redis is the broker too (not so with RabbitMQ as the broker).
    """
    appendonly, save = _config(client, "appendonly"), _config(client, "save")
    policy, maxmemory = _config(client, "maxmemory-policy"), _config(client, "maxmemory")
    out = []
    if appendonly == "no" and save is not None:
        what = "persists nothing" if not save.strip() else f"persists only snapshots (save {save!r})"
        lost = "the run records, chord counters and queued tasks" if holds_queues else "the run records and chord counters"
        out.append(f"Redis at {where} {what} (appendonly no): a restart loses {lost} changed since, and their "
                   "runs never finish; run it with --appendonly yes (docs/reliability.md)")
    if policy not in (None, "noeviction") and maxmemory not in (None, "0"):
        out.append(f"Redis at {where} evicts keys when full (maxmemory-policy {policy}): run records and chord "
                   "counters can vanish; run it with --maxmemory-policy noeviction (docs/reliability.md)")
    return out


class PersistenceCheckStep(bootsteps.StartStopStep):
    """Worker bootstep that logs :func:`persistence_warnings` of the run record's Redis once."""

    label = "pipeline redis persistence check"

    def start(self, worker: Any) -> None:
        from pipeline.redis_conn import make_client, redact
        from pipeline.settings import ledger_url

        url = ledger_url(worker.app.conf)
        if not (url or "").startswith(("redis://", "rediss://")):
            return
        client = make_client(url, retries=1)  # a Redis away at start is the consumer's to report
        try:
            lines = persistence_warnings(client, redact(url), holds_queues=url == worker.app.conf.broker_url)
        except redis.RedisError as exc:
            log.debug("persistence check skipped: %s", exc)
            return
        finally:
            client.close()
        for line in lines:
            log.warning(line)
