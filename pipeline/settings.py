"""Every tunable of the project, read from the environment in one place.

Nothing else in the project calls ``os.getenv``: modules take a :class:`Settings`
(usually :func:`get_settings`), so tests and the embedded stack can change a value by
setting an environment variable before the process starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

DEFAULT_QUEUE = "default"
"""Queue consumed by a worker started without ``--label`` and used by runs without one."""

KEY_PREFIX = "pipeline"
"""Prefix of every Redis key the run ledger writes."""

TUTORIAL_ALPHAS = ("1.0", "0.1", "0.01", "0.001", "0.0001", "0.00001")
"""The tutorial's alphas, as written: what ``sweep``, the schedule and ``backfill`` use unless told."""

PREFORK, THREADS, SOLO = "prefork", "threads", "solo"
"""Celery's names of the execution pools we use."""

WORKER_POOLS = (PREFORK, THREADS, SOLO)
"""Execution pools a worker can use (``worker --pool``, an environment's ``pool``)."""

EMBEDDED_MIN_SLOTS = 10
"""Fewest pool processes the embedded worker may grow to: the widest layer of a six-alpha
sweep is 9 cleanups, and the tutorial's ``--sleep`` demonstration runs them side by side."""

FLOWER_PORT = 5555
"""Port ``flower`` listens on unless ``--port`` says otherwise."""


CACHE_MODES = ("off", "on", "refresh")
"""A run's use of the stage cache: ``off`` (the default), ``on`` (``--cache``: reuse stored results,
store new ones), ``refresh`` (``--refresh-cache``: compute every stage, store the results)."""

NOTIFY_EVENT_NAMES = ("succeeded", "failed", "cancelled", "stuck", "recovered")
"""Events a notification can be sent for (``PIPELINE_NOTIFY_EVENTS``); each is sent as ``run.<name>``."""


def _words(raw: str | None) -> tuple[str, ...]:
    """Items of a space- or comma-separated list, in order, without empties."""
    return tuple(w for w in (raw or "").replace(",", " ").split() if w)


class SettingsError(ValueError):
    """A setting in the environment that cannot be read; the message names it and its value."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    """One of ``choices`` (any case), or ``default`` when unset or empty."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise SettingsError(f"{name}={env.get(name)!r} is not one of {', '.join(choices)}")
    return raw


def _count(env: Mapping[str, str], name: str) -> int | None:
    """A whole number of at least 1, or None when unset or empty."""
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if not raw.strip().isdigit() or int(raw) < 1:
        raise SettingsError(f"{name}={raw!r} is not a whole number of at least 1")
    return int(raw)


@dataclass(frozen=True)
class Settings:
    """The project's configuration; build it with :meth:`from_env`."""

    broker_url: str | None = None
    """``CELERY_BROKER_URL``: a real deployment's broker. Unset: the embedded stack."""

    result_backend: str | None = None
    """``CELERY_RESULT_BACKEND``; defaults to the broker URL."""

    artifacts_root: str = "artifacts"
    """``PIPELINE_ARTIFACTS``: where run directories are made (``--artifacts`` wins): a local
    path, or an fsspec URL such as ``s3://bucket/prefix`` (credentials and endpoint from
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``,
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, read by botocore itself)."""

    state_dir: Path = field(default_factory=lambda: Path(".pipeline"))
    """``PIPELINE_STATE_DIR``: data, port, lock and logs of the embedded stack."""

    visibility_timeout: float = 3600.0
    """``PIPELINE_VISIBILITY_TIMEOUT``: seconds before an unacked message is redelivered."""

    unacked_restore_interval: float = 10.0
    """``PIPELINE_UNACKED_RESTORE_INTERVAL``: how often kombu looks for unacked messages."""

    unacked_restore_throttle: float = 10.0
    """``PIPELINE_UNACKED_RESTORE_THROTTLE``: multiplier kombu applies to that interval."""

    retention_seconds: float = 7 * 24 * 3600.0
    """``PIPELINE_RETENTION_SECONDS``: how long run records and logs are kept."""

    stuck_after: float = 300.0
    """``PIPELINE_STUCK_AFTER``: seconds without progress before a run is flagged stuck."""

    lost_after: float = 30.0
    """``PIPELINE_LOST_AFTER``: seconds without progress (plus the run's ``--sleep`` and
    ``--retry-delay``) after which a worker re-sends an active run's unfinished tasks when none
    of its messages is queued or unacknowledged in the broker's Redis, no task of it runs and a
    live worker of its queue and flow version is there: a message lost between Redis and a
    worker cut off the network (see docs/reliability.md). 0: never (then such a run waits for
    ``restart``). Redis brokers only: RabbitMQ redelivers on a lost connection."""

    connect_timeout: float = 3.0
    """``PIPELINE_CONNECT_TIMEOUT``: socket connect/read timeout towards Redis."""

    redis_retries: int = 20
    """``PIPELINE_REDIS_RETRIES``: reconnect attempts of the run-record clients before they give
    up (capped exponential backoff: 20 ride over about 17 s of Redis outage)."""

    idle_exit_seconds: float = 600.0
    """``PIPELINE_IDLE_EXIT``: the embedded stack stops after this long without use."""

    embedded_concurrency: int | None = None
    """``PIPELINE_EMBEDDED_CONCURRENCY``: most pool processes of the embedded worker (a prefork
    pool that grows with the work and shrinks back to one when idle). Unset: the number of
    CPUs, at least ``EMBEDDED_MIN_SLOTS`` (see :meth:`embedded_slots`)."""

    artifacts_allowed: tuple[str, ...] = ()
    """``PIPELINE_ARTIFACTS_ALLOWED``: roots (``os.pathsep``-separated) artifacts may live under.

    Empty: anywhere. The CLI refuses ``--artifacts`` outside them and workers refuse runs
    whose recorded root is outside them.
    """

    flower_basic_auth: str | None = None
    """``FLOWER_BASIC_AUTH``: ``user:password[,user2:password2]`` Flower asks for."""

    flower_url: str = f"http://localhost:{FLOWER_PORT}"
    """``PIPELINE_FLOWER_URL``: where users open Flower; printed after a submission."""

    worker_record_ttl: float = 15.0
    """``PIPELINE_WORKER_TTL``: seconds a worker's record of its queues lives unless refreshed."""

    worker_heartbeat: float = 5.0
    """``PIPELINE_WORKER_HEARTBEAT``: seconds between refreshes of that record."""

    reclaim_interval: float = 5.0
    """``PIPELINE_RECLAIM_INTERVAL``: seconds between a worker's looks for dead workers' messages
    (a worker is dead once its record expired: ``PIPELINE_WORKER_TTL`` after its last refresh)."""

    beat_interval: float = 0.0
    """``PIPELINE_BEAT_INTERVAL``: seconds between ticks instead of the ``*/1`` crontab (0: crontab)."""

    beat_catchup: float = 900.0
    """``PIPELINE_BEAT_CATCHUP``: the catch-up window, seconds. A beat restarted after a pause sends
    every tick it missed within it (older ones are left to ``backfill``), and a tick's message
    that waited longer than it for a worker is dropped."""

    schedule_label: str | None = None
    """``PIPELINE_SCHEDULE_LABEL``: label (queue) of scheduled runs and of beat's messages."""

    schedule_cache: str = "off"
    """``PIPELINE_SCHEDULE_CACHE``: the stage cache for scheduled and backfilled runs, one of
    :data:`CACHE_MODES` (as ``--cache`` / ``--refresh-cache`` choose it for ``sweep`` and ``run``)."""

    submit_lease: float = 60.0
    """``PIPELINE_SUBMIT_LEASE``: seconds a claim to send a run's canvas holds before another may take it."""

    version_backoff: float = 2.0
    """``PIPELINE_VERSION_BACKOFF``: seconds a worker holds a task of a run recorded under
    another flow version before handing it back to its queue (so it does not spin on it)."""

    public_url: str | None = None
    """``PIPELINE_PUBLIC_URL``: where users reach the web pages (``<url>/runs/<id>``); notifications link there."""

    notify: tuple[str, ...] = ()
    """``PIPELINE_NOTIFY``: notification destinations (URLs, space or comma separated) added to every
    run submitted from here (``--notify`` adds more); see docs/notifications.md."""

    notify_events: tuple[str, ...] = ("failed", "stuck", "recovered")
    """``PIPELINE_NOTIFY_EVENTS``: which of :data:`NOTIFY_EVENT_NAMES` are sent (space or comma separated)."""

    webhook_secret: str | None = None
    """``PIPELINE_WEBHOOK_SECRET``: the Standard Webhooks signing secret (``whsec_<base64>`` or plain text)."""

    notify_interval: float = 1.0
    """``PIPELINE_NOTIFY_INTERVAL``: seconds between a worker's looks for notifications due."""

    notify_backoff: float = 5.0
    """``PIPELINE_NOTIFY_BACKOFF``: seconds before a failed delivery's first retry (then doubling)."""

    notify_max_backoff: float = 300.0
    """``PIPELINE_NOTIFY_MAX_BACKOFF``: most seconds between two attempts of one delivery (unless ``Retry-After`` asks more)."""

    notify_max_age: float = 3600.0
    """``PIPELINE_NOTIFY_MAX_AGE``: seconds after its event a delivery is still retried; then it is given up."""

    notify_timeout: float = 10.0
    """``PIPELINE_NOTIFY_TIMEOUT``: seconds one delivery attempt may take."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read every setting from ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env
        default = DEFAULTS
        broker = env.get("CELERY_BROKER_URL") or None
        return cls(
            broker_url=broker,
            result_backend=env.get("CELERY_RESULT_BACKEND") or broker,
            artifacts_root=env.get("PIPELINE_ARTIFACTS") or default.artifacts_root,
            state_dir=Path(env.get("PIPELINE_STATE_DIR") or default.state_dir),
            visibility_timeout=_float(env, "PIPELINE_VISIBILITY_TIMEOUT", default.visibility_timeout),
            unacked_restore_interval=_float(env, "PIPELINE_UNACKED_RESTORE_INTERVAL", default.unacked_restore_interval),
            unacked_restore_throttle=_float(env, "PIPELINE_UNACKED_RESTORE_THROTTLE", default.unacked_restore_throttle),
            retention_seconds=_float(env, "PIPELINE_RETENTION_SECONDS", default.retention_seconds),
            stuck_after=_float(env, "PIPELINE_STUCK_AFTER", default.stuck_after),
            lost_after=_float(env, "PIPELINE_LOST_AFTER", default.lost_after),
            connect_timeout=_float(env, "PIPELINE_CONNECT_TIMEOUT", default.connect_timeout),
            redis_retries=int(_float(env, "PIPELINE_REDIS_RETRIES", default.redis_retries)),
            idle_exit_seconds=_float(env, "PIPELINE_IDLE_EXIT", default.idle_exit_seconds),
            embedded_concurrency=_count(env, "PIPELINE_EMBEDDED_CONCURRENCY"),
            artifacts_allowed=tuple(p for p in (env.get("PIPELINE_ARTIFACTS_ALLOWED") or "").split(os.pathsep) if p),
            flower_basic_auth=env.get("FLOWER_BASIC_AUTH") or None,
            flower_url=(env.get("PIPELINE_FLOWER_URL") or default.flower_url).rstrip("/"),
            worker_record_ttl=_float(env, "PIPELINE_WORKER_TTL", default.worker_record_ttl),
            worker_heartbeat=_float(env, "PIPELINE_WORKER_HEARTBEAT", default.worker_heartbeat),
            reclaim_interval=_float(env, "PIPELINE_RECLAIM_INTERVAL", default.reclaim_interval),
            beat_interval=_float(env, "PIPELINE_BEAT_INTERVAL", default.beat_interval),
            beat_catchup=_float(env, "PIPELINE_BEAT_CATCHUP", default.beat_catchup),
            schedule_label=env.get("PIPELINE_SCHEDULE_LABEL") or None,
            schedule_cache=_choice(env, "PIPELINE_SCHEDULE_CACHE", CACHE_MODES, default.schedule_cache),
            submit_lease=_float(env, "PIPELINE_SUBMIT_LEASE", default.submit_lease),
            version_backoff=_float(env, "PIPELINE_VERSION_BACKOFF", default.version_backoff),
            public_url=(env.get("PIPELINE_PUBLIC_URL") or "").rstrip("/") or None,
            notify=_words(env.get("PIPELINE_NOTIFY")),
            notify_events=_words(env.get("PIPELINE_NOTIFY_EVENTS")) or default.notify_events,
            webhook_secret=env.get("PIPELINE_WEBHOOK_SECRET") or None,
            notify_interval=_float(env, "PIPELINE_NOTIFY_INTERVAL", default.notify_interval),
            notify_backoff=_float(env, "PIPELINE_NOTIFY_BACKOFF", default.notify_backoff),
            notify_max_backoff=_float(env, "PIPELINE_NOTIFY_MAX_BACKOFF", default.notify_max_backoff),
            notify_max_age=_float(env, "PIPELINE_NOTIFY_MAX_AGE", default.notify_max_age),
            notify_timeout=_float(env, "PIPELINE_NOTIFY_TIMEOUT", default.notify_timeout),
        )

    def embedded_slots(self) -> int:
        """Most pool processes of the embedded worker: the setting, else the CPUs (at least
        ``EMBEDDED_MIN_SLOTS``)."""
        return self.embedded_concurrency or max(EMBEDDED_MIN_SLOTS, os.cpu_count() or 1)

    @property
    def ledger_url(self) -> str | None:
        """Redis URL of the run ledger: the result backend, else the broker."""
        return ledger_url(self)


def ledger_url(conf: Any) -> str | None:
    """Redis URL of the run ledger under ``conf``, a :class:`Settings` or a Celery app's
    ``app.conf`` (same attribute names): its result backend, else its broker."""
    return conf.result_backend or conf.broker_url


DEFAULTS = Settings()
"""Every setting's default: what :meth:`Settings.from_env` uses for a variable left unset or empty."""


def get_settings() -> Settings:
    """The settings of this process, read from the environment now."""
    return Settings.from_env()
