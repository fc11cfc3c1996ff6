"""The transport's reclaim bookkeeping against a real Redis (tests/test_reclaim.py runs real workers).

Messages are put in kombu's ``unacked`` hash by hand, held by made-up workers whose
heartbeat keys exist (alive) or not (dead), and restored through the transport's own QoS.
"""
from __future__ import annotations

import json
from time import time

import pytest
from kombu import Connection
from kombu.utils.json import loads

from pipeline.worker.kombu_redis import OWNERS_KEY, heartbeat_key

QUEUE = "reclaim-q"


@pytest.fixture
def channels(clean_redis):
    """Two channels of our transport on the test Redis: two reclaimers, as in two workers."""
    conns = [Connection(clean_redis.url, transport="pipeline.worker.kombu_redis:Transport",
                        transport_options={"visibility_timeout": 60}) for _ in range(2)]
    yield [c.default_channel for c in conns]
    for c in conns:
        c.release()


def hold(r, tag: str, owner: str, delivered: float | None = None) -> None:
    """Record message ``tag`` (for queue QUEUE, anonymous exchange) as held by ``owner``."""
    body = {"body": tag, "headers": {}, "properties": {"delivery_tag": tag, "delivery_info": {}}}
    r.hset("unacked", tag, json.dumps([body, "", QUEUE]))
    r.zadd("unacked_index", {tag: delivered or time()})
    if owner:
        r.hset(OWNERS_KEY, tag, owner)


def queued(r) -> list[str]:
    return [loads(m)["body"] for m in r.lrange(QUEUE, 0, -1)]


def test_only_dead_workers_messages_are_reclaimed(clean_redis, channels):
    r = clean_redis.client()
    r.set(heartbeat_key("alive@h/1"), "{}", px=60000)
    hold(r, "t-alive", "alive@h/1")
    hold(r, "t-dead-1", "dead@h/2")
    hold(r, "t-dead-2", "dead@h/2")
    assert channels[0].qos.reclaim_dead() == 2
    assert sorted(queued(r)) == ["t-dead-1", "t-dead-2"]
    assert r.hkeys("unacked") == ["t-alive"] and r.hgetall(OWNERS_KEY) == {"t-alive": "alive@h/1"}
    restored = loads(r.lrange(QUEUE, 0, 0)[0])
    assert restored["headers"]["redelivered"] is True  # as kombu marks a restored message


def test_two_reclaimers_never_restore_one_message_twice(clean_redis, channels):
    """Reclaimer 1 reads a dead worker's message; reclaimer 2 restores it and a live worker takes
    it (its new holder) before reclaimer 1 acts: reclaimer 1's check-and-restore does nothing."""
    r = clean_redis.client()
    for i in range(5):
        hold(r, f"t{i}", "dead@h/2")
    first, second = channels[0].qos, channels[1].qos
    real = first._destination

    def interleaved(raw):
        if r.llen(QUEUE) == 0:  # the first time only: the other reclaimer runs in between
            assert second.reclaim_dead() == 5
            tag = r.rpop(QUEUE)  # a live worker takes one message again
            hold(r, loads(tag)["body"], "taker@h/3")
            r.set(heartbeat_key("taker@h/3"), "{}", px=60000)
        return real(raw)

    first._destination = interleaved
    assert first.reclaim_dead() == 0
    assert len(queued(r)) == 4 and r.hlen("unacked") == 1  # four queued, one held by the taker, none twice


def test_visibility_timeout_skips_messages_a_live_worker_holds(clean_redis, channels):
    r = clean_redis.client()
    old = time() - 3600
    r.set(heartbeat_key("alive@h/1"), "{}", px=60000)
    hold(r, "t-alive", "alive@h/1", old)
    hold(r, "t-dead", "dead@h/2", old)
    hold(r, "t-nobody", "", old)  # delivered to a consumer that records no holder
    hold(r, "t-recent", "", time())
    channels[0].qos.restore_visible(num=None, interval=1)
    assert sorted(queued(r)) == ["t-dead", "t-nobody"]
    assert sorted(r.hkeys("unacked")) == ["t-alive", "t-recent"]


def test_a_worker_back_from_the_dead_neither_acks_nor_restores_what_another_holds(clean_redis, channels,
                                                                                   monkeypatch):
    from pipeline.worker import liveness

    r = clean_redis.client()
    hold(r, "t-taken", "taker@h/3")  # taken over from this worker while it was away
    hold(r, "t-mine", "me@h/1")
    monkeypatch.setattr(liveness, "current_owner", lambda: "me@h/1")
    qos = channels[0].qos
    qos.restore_by_tag("t-taken")
    qos._release("t-taken")
    assert queued(r) == [] and r.hget(OWNERS_KEY, "t-taken") == "taker@h/3"
    qos.restore_by_tag("t-mine")
    assert queued(r) == ["t-mine"] and r.hkeys("unacked") == ["t-taken"]


def test_visibility_timeout_restores_what_this_worker_took_on_a_lost_connection(clean_redis, channels,
                                                                                  monkeypatch):
    """After Redis went away, a message this worker took on its earlier connection is acked to a
    closed channel (issue 19): it counts as held by nobody once the timeout passed; what it holds
    on its current connection stays."""
    from pipeline.worker import liveness

    r = clean_redis.client()
    monkeypatch.setattr(liveness, "current_owner", lambda: "me@h/1")
    r.set(heartbeat_key("me@h/1"), "{}", px=60000)
    old = time() - 3600
    hold(r, "t-earlier", "me@h/1", old)
    hold(r, "t-current", "me@h/1", old)
    qos = channels[0].qos
    qos._delivered["t-current"] = object()
    qos.restore_visible(num=None, interval=1)
    assert queued(r) == ["t-earlier"] and r.hkeys("unacked") == ["t-current"]


def test_a_reclaimer_waits_for_its_own_heartbeat_to_hold_a_whole_ttl(clean_redis):
    """After a gap in its own heartbeat long enough for every key to have expired (Redis away,
    the host cut off), a worker judges nobody dead until its own key has held a TTL again."""
    from pipeline.settings import Settings
    from pipeline.worker.liveness import WorkerRecord

    record = WorkerRecord(clean_redis.client(), "me@h", lambda: ["default"],
                          Settings(worker_record_ttl=15, worker_heartbeat=5))
    record._written(100.0)
    for now in (105.0, 110.0, 115.0):
        record._written(now)
    assert record._streak_since == 100.0  # refreshes 5 s apart: one streak
    record._written(127.0)  # 12 s without a write: others' keys may have expired meanwhile
    assert record._streak_since == 127.0
