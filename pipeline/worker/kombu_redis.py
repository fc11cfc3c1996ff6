"""kombu's Redis transport: one Redis client object per channel, and channels that outlive their connection.

Client reuse: kombu builds a new ``redis.Redis`` for every publish and every ack
(``Channel.conn_or_acquire``); with redis-py 8 that object costs about 40 us to build (its
table of ~200 response callbacks), which was 10 % of a prefork worker's main process in
a wide sweep (bench/RESULTS.md). The client object holds no connection of its own: it
takes one from the channel's pool for each command, so one per channel is as safe to
share between threads as the pool is. A new one is made whenever the channel replaces
its pool (after a connection error).

A closed connection's channels (issue 19): after Redis went away, Celery's consumer
closes its kombu ``Connection``, which sets the transport's ``client`` to None. A channel
of that connection still used afterwards (closing it restores its unacknowledged
messages; a task that ends after the reconnection acks its message on the channel it
came from) needs a new connection pool, and kombu's ``Channel._connparams`` reads
``self.connection.client.hostname``: ``AttributeError: 'NoneType' object has no
attribute 'hostname'``. AttributeError is none of the transport's connection or channel
errors, so neither ``kombu.common.ignore_errors`` (in Celery's
``Consumer.on_connection_error_after_connected``) nor ``Message.ack_log_error`` catches
it: the consumer reports ``Unrecoverable error`` and the worker exits (about one Redis
SIGKILL in four with a prefork worker). :meth:`Channel._connparams` raises a
``redis.ConnectionError`` instead, which those callers expect: the restore or the ack is
skipped as if Redis were still away, and the message comes back after the visibility
timeout (a task already Success returns its stored output).
Upstream code: ``Channel._connparams`` and ``QoS.restore_unacked`` / ``QoS.ack`` in
https://github.com/celery/kombu/blob/v5.7.0/kombu/transport/redis.py (kombu 5.7.0,
pinned in requirements.txt); report upstream there (https://github.com/celery/kombu/issues).
"""
from __future__ import annotations

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """A kombu Redis channel that reuses its synchronous client object and survives its closed connection."""

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
        if self.connection.client is None:
            raise redis.ConnectionError("this channel's connection was closed (Redis went away); "
                                        "its unacknowledged messages return after the visibility timeout")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
