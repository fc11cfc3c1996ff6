"""Redis clients with timeouts and reconnect-retries, one per URL per process."""
from __future__ import annotations

import threading

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from pipeline.settings import Settings, get_settings

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


class BrokerUnreachable(RuntimeError):
    """The configured Redis did not answer in time."""


def make_client(url: str, settings: Settings | None = None, *, retries: int | None = None) -> redis.Redis:
    """A new client for ``url`` with connect/socket timeouts and retry on connection loss.

    ``retries`` (default ``PIPELINE_REDIS_RETRIES``, 20) reconnect attempts with capped
    exponential backoff (about 17 s in all at 20) let workers and the waiting CLI ride over
    a Redis restart.
    """
    settings = settings or get_settings()
    retries = settings.redis_retries if retries is None else retries
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=settings.connect_timeout,
        socket_timeout=max(settings.connect_timeout, 10.0),
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=30,
        decode_responses=True,
    )


def shared_client(url: str) -> redis.Redis:
    """The process-wide client for ``url`` (thread-safe: redis-py pools connections)."""
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = make_client(url)
        return client


def check_reachable(url: str, timeout: float) -> None:
    """Raise :class:`BrokerUnreachable` unless Redis at ``url`` answers PING within ``timeout``.

    A malformed URL, a refused or silent port and a failed AUTH all count as unreachable.
    """
    client = None
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(ExponentialBackoff(), 0)
        )
        client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise BrokerUnreachable(f"cannot reach the broker at {redact(url)}: {exc}") from None
    finally:
        if client is not None:
            client.close()


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{creds}@{host}"


OOM_REPLY = "OOM command not allowed"
"""What a full Redis answers a write with; inside a Lua script it comes back wrapped in a
plain ResponseError ("Error running script ... -OOM command not allowed ...")."""


def is_full_redis(exc: BaseException) -> bool:
    """True if ``exc`` is a full Redis refusing a write (directly or from within a script)."""
    return isinstance(exc, redis.OutOfMemoryError) or (
        isinstance(exc, redis.ResponseError) and OOM_REPLY in str(exc))


def full_redis(exc: BaseException) -> redis.ResponseError | None:
    """The error of a full Redis behind ``exc`` (itself, or what caused it), else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if is_full_redis(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def full_redis_message(exc: redis.ResponseError, url: str | None) -> str:
    """One line saying Redis at ``url`` is full and what to do."""
    where = f" at {redact(url)}" if url else ""
    reply = str(exc)
    reply = reply[reply.index(OOM_REPLY):] if OOM_REPLY in reply else reply
    return (f"Redis{where} is full (redis.exceptions.OutOfMemoryError: {reply}): it refuses writes at its "
            "maxmemory with noeviction; free memory or raise maxmemory, then try again")
