"""kombu's Redis transport: one client object per channel, channels that outlive their
connection, and reclaim by heartbeat.

Client reuse: kombu builds a new ``redis.Redis`` for every publish and every ack
(``Channel.conn_or_acquire``); with redis-py 8 that object costs about 40 us to build (its
table of ~200 response callbacks), which was 10 % of a prefork worker's main process in
a wide sweep (bench/RESULTS.md). The client object holds no connection of its own: it
takes one from the channel's pool for each command, so one per channel is as safe to
share between threads as the pool is. A new one is made whenever the channel replaces
its pool (after a connection error). Upstream code: ``Channel._create_client(asynchronous=False)``,
the ``Channel.pool`` property (``_disconnect_pools`` resets it) and ``Channel.conn_or_acquire``
(a ``_create_client()`` per synchronous command) in
https://github.com/celery/kombu/blob/v5.7.0/kombu/transport/redis.py (kombu 5.7.0).

A closed connection's channels (issue 19): after Redis went away, Celery's consumer
closes its kombu ``Connection``, which sets the transport's ``client`` to None. A channel
of that connection still used afterwards (closing it restores its unacknowledged
messages; a task that ends after the reconnection acks its message on the channel it
came from) needs a new connection pool, and kombu's ``Channel._connparams`` reads
``self.connection.client.hostname``: ``AttributeError: 'NoneType' object has no
attribute 'hostname'`` (or ``... 'client'`` once the channel itself was closed, which sets
its ``connection`` to None). AttributeError is none of the transport's connection or channel
errors, so neither ``kombu.common.ignore_errors`` (in Celery's
``Consumer.on_connection_error_after_connected``) nor ``Message.ack_log_error`` catches
it: the consumer reports ``Unrecoverable error`` and the worker exits (about one Redis
SIGKILL in four with a prefork worker). :meth:`Channel._connparams` raises a
``redis.ConnectionError`` instead, which those callers expect: the restore or the ack is
skipped as if Redis were still away, and the message comes back after the visibility
timeout (a task already Success returns its stored output): :meth:`QoS.restore_visible`
counts a message this worker took on an earlier connection as held by nobody.

Reclaim: kombu keeps each delivered, unacknowledged message in the ``unacked`` hash
(delivery tag -> message) and ``unacked_index`` (tag -> delivery time), and puts it back
in its queue only once older than the visibility timeout (an hour). :class:`QoS` also
records which worker holds each tag (``pipeline:unacked_owner``, tag -> ``<node>/<pid>``,
the suffix of the worker's heartbeat key, see :mod:`pipeline.worker.liveness`). Every
live worker looks every ``PIPELINE_RECLAIM_INTERVAL`` seconds for tags whose holder's
heartbeat key has expired and puts them back (:meth:`QoS.reclaim_dead`); the visibility
timeout no longer restores a message a live worker holds, however long it has held it.
Every restore is one Lua script that first checks the message is still held as it was
read (same payload, same holder, holder still dead), so two reclaimers, or a reclaimer
and a worker that came back, never put one message back twice. Follows kombu 5.7's
``kombu/transport/redis.py`` (``QoS.append``, ``restore_by_tag``, ``restore_visible``,
``Channel._do_restore_message``), tested in tests/test_reclaim*.py.

Upstream code: ``Channel._connparams``, ``QoS.append``, ``QoS.ack``, ``QoS.restore_by_tag``,
``QoS.restore_visible`` and ``QoS.restore_unacked`` in
https://github.com/celery/kombu/blob/v5.7.0/kombu/transport/redis.py (kombu 5.7.0,
pinned in requirements.txt); report upstream there (https://github.com/celery/kombu/issues).

``tests/test_upstream_pins.py`` fails on another kombu version and when those names change.
Loaded only by name: ``broker_transport`` = ``"pipeline.worker.kombu_redis:Transport"`` in
:func:`pipeline.celery_app.broker_transport` (for ``redis://`` brokers).
"""
from __future__ import annotations

import logging
from time import time
from typing import Iterable

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from pipeline.ledger.workers import OWNERS_KEY, record_key
from pipeline.redis_conn import is_full_redis
from pipeline.settings import get_settings
from pipeline.worker import liveness

log = logging.getLogger(__name__)

RELEASE = """
-- KEYS: unacked, unacked_index, owners.  ARGV: tag, this worker.
-- Forget an acknowledged (or dropped) tag, unless another worker holds it now: this one
-- was declared dead and a live one took the message over. Returns 1 if forgotten.
local owner = redis.call('HGET', KEYS[3], ARGV[1])
if owner and owner ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

RESTORE = """
-- KEYS: unacked, unacked_index, owners, the expected holder's heartbeat key, then the
--       queue lists the message goes back to.
-- ARGV: tag, its unacked entry as read ('' none), the message to push, expected holder
--       ('' none), '1' if the holder must be dead, latest delivery time allowed ('' any),
--       '1' to push leftmost.
-- Puts the message back only if nothing changed since it was read; returns 1 if it did.
local tag = ARGV[1]
if (redis.call('HGET', KEYS[1], tag) or '') ~= ARGV[2] then return 0 end
if (redis.call('HGET', KEYS[3], tag) or '') ~= ARGV[4] then return 0 end
if ARGV[5] == '1' and ARGV[4] ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
if ARGV[6] ~= '' then
  local score = redis.call('ZSCORE', KEYS[2], tag)
  if score and tonumber(score) > tonumber(ARGV[6]) then return 0 end
end
redis.call('ZREM', KEYS[2], tag)
redis.call('HDEL', KEYS[1], tag)
redis.call('HDEL', KEYS[3], tag)
if ARGV[2] ~= '' then
  for i = 5, #KEYS do
    if ARGV[7] == '1' then redis.call('LPUSH', KEYS[i], ARGV[3]) else redis.call('RPUSH', KEYS[i], ARGV[3]) end
  end
end
return 1
"""


def heartbeat_key(owner: str) -> str:
    """The liveness key of the worker ``owner`` (``<node name>/<pid>``)."""
    return record_key(owner)


def may_judge_deaths() -> bool:
    """True once this worker may take another's expired heartbeat for its death: its own has
    been written without a break for a whole record TTL (see
    :meth:`liveness.WorkerRecord.healthy_for`), or this process is no worker of ours."""
    record = liveness.current_record()
    return record is None or record.healthy_for() >= record.ttl


def _text(value: "bytes | str | None") -> str:
    return "" if value is None else bytes_to_str(value)


class QoS(kombu_redis.QoS):
    """kombu's Redis ack emulation, recording which worker holds each unacked message."""

    def _scripts(self, client: redis.Redis) -> tuple:
        cached = self.__dict__.get("_pipeline_scripts")
        if cached is None or cached[0] is not client:
            cached = self.__dict__["_pipeline_scripts"] = (
                client, client.register_script(RELEASE), client.register_script(RESTORE))
        return cached[1], cached[2]

    def append(self, message, delivery_tag) -> None:
        """kombu's, plus the holder of ``delivery_tag``, in the same MULTI."""
        owner = liveness.current_owner()
        if owner is None:  # not a worker of ours: kombu's own bookkeeping
            return super().append(message, delivery_tag)
        delivery = message.delivery_info
        entry = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time()}) \
                .hset(self.unacked_key, delivery_tag, entry) \
                .hset(OWNERS_KEY, delivery_tag, owner) \
                .execute()
            virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag) -> None:
        self._release(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag, requeue: bool = False) -> None:
        if requeue:
            self.restore_by_tag(delivery_tag, leftmost=True)
        else:
            self._release(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def _release(self, tag) -> None:
        with self.channel.conn_or_acquire() as client:
            release, _ = self._scripts(client)
            release(keys=[self.unacked_key, self.unacked_index_key, OWNERS_KEY],
                    args=[tag, liveness.current_owner() or ""], client=client)

    def restore_by_tag(self, tag, client=None, leftmost: bool = False) -> None:
        """Put ``tag`` back in its queue if this worker holds it (or nobody does): a worker
        that came back after it was declared dead restores nothing a live one took over."""
        with self.channel.conn_or_acquire(client) as client:
            self._restore(client, _text(tag), allowed={"", liveness.current_owner() or ""}, leftmost=leftmost)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        """kombu's restore of messages delivered longer than the visibility timeout ago, except
        those a live worker holds: its heartbeat says it still works on them. A message this
        worker took on an earlier connection (lost since, with Redis) is held by nobody: its
        acknowledgement went to a closed channel.

        Skipped, with a warning, while Redis is full: the scan runs when a consumer connects
        (``MultiChannelPoller.on_poll_init``), and a refusal there failed every reconnection,
        which Celery's consumer retried ten times a second, each attempt leaving its
        connection's pools open (kombu 5.7's own scan takes a ``SET NX`` mutex a full Redis
        refuses; issue 19). It runs again at its next interval, once there is room.
        """
        try:
            self._restore_visible(start, num, interval)
        except redis.ResponseError as exc:
            if not is_full_redis(exc):
                raise
            log.warning("Redis is full (%s): unacked messages are restored once it has room again", exc)

    def _restore_visible(self, start: int, num: int, interval: int) -> None:
        self._vrestore_count += 1
        if (self._vrestore_count - 1) % (interval or 1):
            return
        me, here = liveness.current_owner(), self._held_here()
        judge = may_judge_deaths()
        with self.channel.conn_or_acquire() as client:
            ceil = time() - self.visibility_timeout
            visible = client.zrange(self.unacked_index_key, ceil, 0, desc=True, byscore=True,
                                    offset=num and start, num=num)
            for tag in map(_text, visible or []):
                orphaned = {me} if me and tag not in here else set()
                allowed = None if judge else {"", *orphaned}  # see may_judge_deaths
                self._restore(client, tag, allowed=allowed, dead_only=True, orphaned=orphaned, ceil=ceil)

    def _held_here(self) -> set[str]:
        """Tags delivered to this worker on its current connection and not acknowledged yet."""
        held: set[str] = set()
        for channel in list(self.channel.connection.cycle._channels):
            qos = getattr(channel, "_qos", None)
            if qos is not None:
                held.update(map(_text, list(qos._delivered)))
        return held

    def reclaim_dead(self) -> int:
        """Put back every message held by a worker whose heartbeat key has expired; return how many."""
        me = liveness.current_owner()
        restored = 0
        with self.channel.conn_or_acquire() as client:
            held = {_text(t): _text(o) for t, o in client.hgetall(OWNERS_KEY).items()}
            owners = sorted({o for o in held.values() if o and o != me})
            if not owners:
                return 0
            pipe = client.pipeline(transaction=False)
            for owner in owners:
                pipe.exists(heartbeat_key(owner))
            dead = {owner for owner, alive in zip(owners, pipe.execute()) if not alive}
            for tag, owner in held.items():
                if owner in dead and self._restore(client, tag, allowed={owner}, dead_only=True):
                    restored += 1
                    log.warning("reclaimed message %s of worker %s, whose heartbeat expired", tag, owner)
        return restored

    def _restore(self, client: redis.Redis, tag: str, allowed: "Iterable[str] | None" = None,
                 dead_only: bool = False, orphaned: "set[str] | frozenset[str]" = frozenset(),
                 ceil: float | None = None, leftmost: bool = False) -> bool:
        """Put ``tag`` back in its queue(s) if its holder is in ``allowed`` (None: anyone) and,
        with ``dead_only``, has no heartbeat or is in ``orphaned``; only if nothing changed
        since it was read."""
        pipe = client.pipeline(transaction=False)
        pipe.hget(self.unacked_key, tag)
        pipe.hget(OWNERS_KEY, tag)
        raw, owner = pipe.execute()
        owner = _text(owner)
        if allowed is not None and owner not in allowed:
            return False
        if owner in orphaned:
            dead_only = False
        if dead_only and owner and client.exists(heartbeat_key(owner)):
            return False
        payload, queues = self._destination(raw)
        _, restore = self._scripts(client)
        keys = [self.unacked_key, self.unacked_index_key, OWNERS_KEY, heartbeat_key(owner), *queues]
        args = [tag, raw or "", payload, owner, "1" if dead_only else "0",
                "" if ceil is None else repr(ceil), "1" if leftmost else "0"]
        return bool(restore(keys=keys, args=args, client=client))

    def _destination(self, raw: "bytes | None") -> tuple[str, list[str]]:
        """The message to push back (marked redelivered) and the queue lists it goes to, as
        kombu's ``Channel._do_restore_message`` decides them; nothing for an unreadable entry."""
        if not raw:
            return "", []
        channel = self.channel
        try:
            message, exchange, routing_key = loads(bytes_to_str(raw))
            try:
                message["headers"]["redelivered"] = True
                message["properties"]["delivery_info"]["redelivered"] = True
            except KeyError:
                pass
            priority = channel._get_message_priority(message, reverse=False)
            queues = [channel._q_for_pri(q, priority) for q in channel._lookup(exchange, routing_key)]
            return dumps(message), queues
        except channel.connection_errors:
            raise
        except Exception:
            log.critical("could not restore message: %r", raw, exc_info=True)
            return "", []


class Channel(kombu_redis.Channel):
    """A kombu Redis channel that reuses its synchronous client object, survives its closed
    connection, and uses :class:`QoS`."""

    QoS = QoS
    _sync_client: "redis.Redis | None" = None
    _sync_client_pool: "redis.ConnectionPool | None" = None

    def _create_client(self, asynchronous: bool = False) -> redis.Redis:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self._sync_client
        if client is None or self._sync_client_pool is not pool:
            client = super()._create_client()
            self._sync_client, self._sync_client_pool = client, pool
        return client

    def _connparams(self, asynchronous: bool = False) -> dict:
        """kombu's connection parameters; a ConnectionError once the channel's connection was closed."""
        if self.connection is None or self.connection.client is None:  # channel or connection closed
            raise redis.ConnectionError("this channel's connection was closed (Redis went away); "
                                        "its unacknowledged messages return after the visibility timeout")
        return super()._connparams(asynchronous=asynchronous)

    def close(self) -> None:
        """Close as kombu does, then drop the pool that restoring unacked messages made.

        kombu's ``Channel.close`` disconnects its pools first and then (``virtual.Channel.close``
        -> ``QoS.restore_unacked_once``) takes a client to push the unacked messages back,
        which builds a new pool that nothing disconnects: every close of a channel holding
        messages left connections open, and while a full Redis failed the consumer's
        reconnections it did so ten times a second (issue 19).
        """
        try:
            super().close()
        finally:
            self._disconnect_pools()
            self._sync_client = self._sync_client_pool = None

    def _restore(self, message, leftmost: bool = False) -> None:
        if not self.ack_emulation:
            return super()._restore(message)
        self.qos.restore_by_tag(message.delivery_tag, leftmost=leftmost)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`, and a reclaimer on the worker's event loop."""

    Channel = Channel

    def register_with_event_loop(self, connection, loop) -> None:
        super().register_with_event_loop(connection, loop)
        cycle = self.cycle
        old = getattr(cycle, "_pipeline_reclaim_tref", None)
        if old is not None:  # a reconnect registers again: one timer only
            old.cancel()
        cycle._pipeline_reclaim_tref = loop.call_repeatedly(get_settings().reclaim_interval, self.reclaim)

    def reclaim(self) -> int:
        """Put back the messages of dead workers (see :meth:`QoS.reclaim_dead`); return how many.

        Only once this worker's own heartbeat has been written without a break for a full
        record TTL (see :meth:`liveness.WorkerRecord.healthy_for`).
        """
        if liveness.current_record() is None or not may_judge_deaths():
            return 0
        for channel in list(self.cycle._channels):
            if channel.active_queues:
                try:
                    return channel.qos.reclaim_dead()
                except channel.connection_errors:
                    log.debug("reclaim: connection error, will retry on next cycle", exc_info=True)
                    return 0
        return 0
