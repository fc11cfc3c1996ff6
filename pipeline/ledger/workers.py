"""Live workers' records in Redis: one short-lived key per worker process, no broadcast.

``pipeline:workers:<node name>/<pid>`` = JSON ``{"hostname", "pid", "queues", "digest",
"seen"}`` (``digest``: the flow-version digest of the code it runs, see versions.py),
written with an expiry (a killed worker's key expires on its own). The worker side keeps
its record fresh (:mod:`pipeline.worker.liveness`); the CLI reads them all at submission.
"""
from __future__ import annotations

import json

import redis

from pipeline.settings import KEY_PREFIX

WORKERS_PREFIX = f"{KEY_PREFIX}:workers:"
"""Prefix of the per-worker keys."""

OWNERS_KEY = f"{KEY_PREFIX}:unacked_owner"
"""Hash: delivery tag -> the worker (``<node name>/<pid>``) holding that unacked message
(kept by the worker's transport, :mod:`pipeline.worker.kombu_redis`)."""


def record_key(name: str) -> str:
    """The Redis key of the worker named ``<node name>/<pid>``."""
    return f"{WORKERS_PREFIX}{name}"


def worker_key(hostname: str, pid: int) -> str:
    """The Redis key of the worker ``hostname`` running as process ``pid``."""
    return record_key(f"{hostname}/{pid}")


def write_worker(client: redis.Redis, key: str, record: dict, ttl_ms: int) -> None:
    """Write one worker's record under ``key`` with a fresh expiry of ``ttl_ms``."""
    client.set(key, json.dumps(record), px=ttl_ms)


def delete_worker(client: redis.Redis, key: str) -> None:
    """Delete one worker's record (it stopped)."""
    client.delete(key)


def worker_records(client: redis.Redis) -> dict[str, dict]:
    """Live worker key suffix (``<node name>/<pid>``) -> its record (queues, digest, ...)."""
    keys = sorted(client.scan_iter(match=f"{WORKERS_PREFIX}*", count=500))
    if not keys:
        return {}
    out: dict[str, dict] = {}
    for key, raw in zip(keys, client.mget(keys)):
        if raw is None:  # expired between SCAN and MGET
            continue
        try:
            record = json.loads(raw)
            out[key[len(WORKERS_PREFIX):]] = {**record, "queues": list(record.get("queues", []))}
        except (ValueError, AttributeError, TypeError):
            continue
    return out


def live_workers(client: redis.Redis) -> dict[str, list[str]]:
    """Live worker key suffix (``<node name>/<pid>``) -> the queues it consumes."""
    return {name: record["queues"] for name, record in worker_records(client).items()}
