"""The brokers we serve: Redis (``redis://``...) and RabbitMQ (``amqp://``), told apart by URL.

The run record always lives in Redis: the broker's when it is Redis, else the result
backend's (``CELERY_RESULT_BACKEND=redis://...``), the rule of :attr:`Settings.ledger_url`.
With RabbitMQ the broker itself redelivers a dead consumer's unacknowledged messages (our
reclaim by heartbeat, :mod:`pipeline.worker.kombu_redis`, is the Redis transport's), and a
queue's waiting messages and consumers come from a passive ``queue.declare``.

Imports neither Celery nor kombu at module level (``pipeline.settings`` stays light); kombu is
imported only to talk to RabbitMQ.
"""
from __future__ import annotations

from pipeline.redis_conn import BrokerUnreachable, redact
from pipeline.redis_conn import check_reachable as check_redis_reachable
from pipeline.settings import Settings

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
"""URL schemes of a Redis server (the broker's, or the run record's)."""

AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
"""URL schemes of a RabbitMQ broker (py-amqp, which kombu ships with)."""


class UnsupportedBroker(ValueError):
    """A broker or result-backend URL the project cannot serve; the message names it."""


def is_redis(url: str | None) -> bool:
    """True for a Redis URL."""
    return (url or "").startswith(REDIS_SCHEMES)


def is_amqp(url: str | None) -> bool:
    """True for a RabbitMQ (AMQP 0-9-1) URL."""
    return (url or "").startswith(AMQP_SCHEMES)


def check_supported(settings: Settings) -> None:
    """Raise :class:`UnsupportedBroker` unless the broker is Redis or RabbitMQ and the run
    record (:attr:`Settings.ledger_url`) is Redis. No broker set (the embedded stack): fine."""
    broker = settings.broker_url
    if not broker:
        return
    if not (is_redis(broker) or is_amqp(broker)):
        raise UnsupportedBroker(
            f"CELERY_BROKER_URL={redact(broker)} is not a broker we serve: use redis://HOST:6379/0 "
            "or amqp://USER:PASSWORD@HOST:5672//")
    if not is_redis(settings.ledger_url):
        backend = ("CELERY_RESULT_BACKEND is unset" if settings.result_backend in (None, broker)
                   else f"CELERY_RESULT_BACKEND={redact(settings.result_backend)} is not Redis")
        raise UnsupportedBroker(
            f"{backend}: with CELERY_BROKER_URL={redact(broker)} the run record needs a Redis result "
            "backend, e.g. CELERY_RESULT_BACKEND=redis://HOST:6379/0")


def check_reachable(url: str, timeout: float) -> None:
    """Raise :class:`BrokerUnreachable` unless the Redis or RabbitMQ at ``url`` answers within
    ``timeout`` (a refused port, a silent one and refused credentials all count)."""
    if not is_amqp(url):
        check_redis_reachable(url, timeout)
        return
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout, transport_options={"max_retries": 0}) as conn:
            conn.connect()
    except Exception as exc:  # socket errors, AccessRefused, a bad virtual host...
        raise BrokerUnreachable(f"cannot reach the broker at {redact(url)}: {exc}") from None


def amqp_queue_counts(url: str, queues: list[str], timeout: float = 5.0) -> dict[str, tuple[int, int] | None]:
    """Queue -> (ready messages, consumers) on the RabbitMQ at ``url``, by a passive
    ``queue.declare`` (creates nothing); None for a queue RabbitMQ does not have (yet)."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    counts: dict[str, tuple[int, int] | None] = {}
    with Connection(url, connect_timeout=timeout) as conn:
        channel = conn.channel()
        try:
            for queue in queues:
                try:
                    _name, messages, consumers = channel.queue_declare(queue=queue, passive=True)
                    counts[queue] = (messages, consumers)
                except NotFound:  # RabbitMQ closes the channel on a missing queue: open another
                    counts[queue] = None
                    channel = conn.channel()
        finally:
            channel.close()
    return counts
