"""Pending and past notification deliveries, kept in Redis beside the run records.

A run's end, a restart, a reclaimed task (scripts.py ``notify``) and the stuck check
(:func:`mark_stuck`) queue one delivery per destination, atomically with the transition
that caused it. Each is a hash ``pipeline:notify:delivery:<id>`` (event id and name, run
id, URL, status, attempts, last error, times, body once built), and its id sits in:

- ``pipeline:notify:due``, a sorted set by the time of its next attempt, while pending.
  :func:`claim_due` takes the due ones atomically and pushes their score a lease ahead,
  so two workers never send one at once, and one whose sender died is sent again later
  (at least once);
- ``pipeline:notify:all`` (by creation) and ``pipeline:run:<id>:notify`` (a list), for
  ``notifications`` and the run page. Everything expires with the run records.
"""
from __future__ import annotations

import time
from typing import Any

import redis

from pipeline.ledger import scripts as ledger_scripts
from pipeline.settings import KEY_PREFIX

DUE = f"{KEY_PREFIX}:notify:due"
"""Sorted set: pending delivery id -> unix time of its next attempt (written in scripts.py too)."""

ALL = f"{KEY_PREFIX}:notify:all"
"""Sorted set: every kept delivery id -> its creation time."""

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
"""A delivery's statuses: still to be (re)tried, received by its destination, given up."""

_CLAIM = """
-- KEYS: the due set.  ARGV: now, lease seconds, at most how many.
-- Takes the due deliveries and moves them a lease ahead: nobody else takes them meanwhile.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id) end
return ids
"""


def delivery_key(delivery_id: str) -> str:
    """The hash of one delivery."""
    return f"{KEY_PREFIX}:notify:delivery:{delivery_id}"


def run_deliveries_key(run_id: str) -> str:
    """The list of ``run_id``'s delivery ids, oldest first."""
    return f"{KEY_PREFIX}:run:{run_id}:notify"


def claim_due(r: redis.Redis, lease: float, limit: int = 20, now: float | None = None) -> list[str]:
    """Atomically take up to ``limit`` deliveries due now; they are due again after ``lease`` s."""
    now = time.time() if now is None else now
    return list(r.eval(_CLAIM, 1, DUE, repr(now), repr(lease), limit))


def get_delivery(r: redis.Redis, delivery_id: str) -> dict[str, Any] | None:
    """One delivery's fields (None: expired or unknown)."""
    return r.hgetall(delivery_key(delivery_id)) or None


def keep_body(r: redis.Redis, delivery_id: str, body: str) -> str:
    """Store the body built for the first attempt (every retry sends the same); return the stored one."""
    key = delivery_key(delivery_id)
    r.hsetnx(key, "body", body)
    return r.hget(key, "body") or body


def record_attempt(r: redis.Redis, delivery_id: str, status: str, error: str = "",
                   next_at: float | None = None, now: float | None = None) -> None:
    """Count one attempt and its outcome: ``status`` (pending with ``next_at``, delivered or failed)
    and ``error`` (a failed attempt's; kept as the last error)."""
    now = time.time() if now is None else now
    key = delivery_key(delivery_id)
    pipe = r.pipeline(transaction=True)
    pipe.hincrby(key, "attempts", 1)
    fields = {"status": status, "last_attempt": repr(now), "next": repr(next_at) if status == PENDING and next_at else ""}
    if error:  # a delivered one keeps the error of its last failed attempt
        fields["last_error"] = error
    pipe.hset(key, mapping=fields)
    if status == PENDING and next_at is not None:
        pipe.zadd(DUE, {delivery_id: next_at})
    else:
        pipe.zrem(DUE, delivery_id)
    pipe.execute()


def deliveries(r: redis.Redis, run_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Deliveries of ``run_id`` (oldest first), or the newest ``limit`` of all runs (newest first)."""
    if run_id:
        ids = r.lrange(run_deliveries_key(run_id), 0, -1)
    else:
        ids = r.zrevrange(ALL, 0, max(0, limit - 1))
    pipe = r.pipeline(transaction=False)
    for delivery_id in ids:
        pipe.hgetall(delivery_key(delivery_id))
    return [row for row in pipe.execute() if row]


def mark_stuck(r: redis.Redis, run_key: str, updated: str, ttl: int) -> bool:
    """Queue ``run.stuck`` for the run at ``run_key`` unless its stuck episode (its ``updated``)
    was already notified; True if this call queued it (see scripts.STUCK)."""
    return bool(r.eval(ledger_scripts.STUCK, 1, run_key, ttl, repr(time.time()), updated))



def drop_due(r: redis.Redis, delivery_id: str) -> None:
    """Take ``delivery_id`` off the due set (it is no longer pending, or gone)."""
    r.zrem(DUE, delivery_id)


class NotificationBook:
    """The deliveries in one Redis, for the code outside the ledger (the sender, the views):
    the functions above with the client bound, so nobody else holds the ledger's client."""

    def __init__(self, client: redis.Redis) -> None:
        self._r = client

    def claim_due(self, lease: float, limit: int = 20, now: float | None = None) -> list[str]:
        """See :func:`claim_due`."""
        return claim_due(self._r, lease, limit, now)

    def get(self, delivery_id: str) -> dict[str, Any] | None:
        """See :func:`get_delivery`."""
        return get_delivery(self._r, delivery_id)

    def keep_body(self, delivery_id: str, body: str) -> str:
        """See :func:`keep_body`."""
        return keep_body(self._r, delivery_id, body)

    def record_attempt(self, delivery_id: str, status: str, error: str = "", next_at: float | None = None) -> None:
        """See :func:`record_attempt`."""
        record_attempt(self._r, delivery_id, status, error, next_at)

    def drop_due(self, delivery_id: str) -> None:
        """See :func:`drop_due`."""
        drop_due(self._r, delivery_id)

    def deliveries(self, run_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """See :func:`deliveries`."""
        return deliveries(self._r, run_id, limit)

    def mark_stuck(self, run_key: str, updated: str, ttl: int) -> bool:
        """See :func:`mark_stuck`."""
        return mark_stuck(self._r, run_key, updated, ttl)
