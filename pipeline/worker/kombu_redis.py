"""kombu's Redis transport, with one Redis client object per channel instead of one per command.

kombu builds a new ``redis.Redis`` for every publish and every ack
(``Channel.conn_or_acquire``); with redis-py 8 that object costs about 40 us to build (its
table of ~200 response callbacks), which was 10 % of a prefork worker's main process in
a wide sweep (bench/RESULTS.md). The client object holds no connection of its own: it
takes one from the channel's pool for each command, so one per channel is as safe to
share between threads as the pool is. A new one is made whenever the channel replaces
its pool (after a connection error).
"""
from __future__ import annotations

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """A kombu Redis channel that reuses its synchronous client object."""

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


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
