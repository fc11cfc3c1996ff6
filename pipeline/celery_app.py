"""The Celery app, configured from :mod:`pipeline.settings` (section 7 of the design)."""
from __future__ import annotations

from celery import Celery

from pipeline.schedule.beat import beat_config
from pipeline.settings import DEFAULT_QUEUE, Settings, get_settings
from pipeline.worker.logcontext import LOG_FORMAT, TASK_LOG_FORMAT
from pipeline.worker.logcontext import install as install_log_context


def celery_config(settings: Settings) -> dict:
    """Celery settings for ``settings``: JSON only, late ack, requeue on loss, prefetch 1, UTC."""
    transport = {
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": settings.unacked_restore_interval,
        "unacked_restore_throttle": settings.unacked_restore_throttle,
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": max(settings.connect_timeout, 10.0),
        "retry_on_timeout": True,
    }
    return {
        "broker_url": settings.broker_url,
        **broker_transport(settings.broker_url),
        "result_backend": settings.result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": DEFAULT_QUEUE,
        "broker_transport_options": transport,
        "result_backend_transport_options": {
            "visibility_timeout": settings.visibility_timeout,
            "retry_policy": {"timeout": 5.0},
        },
        "redis_socket_connect_timeout": settings.connect_timeout,
        "redis_socket_timeout": max(settings.connect_timeout, 10.0),
        "redis_retry_on_timeout": True,
        "redis_backend_health_check_interval": 30,
        "broker_connection_timeout": settings.connect_timeout,
        "broker_connection_retry_on_startup": True,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 30,
        "result_expires": 24 * 3600,
        "result_extended": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # Nothing reads Celery's result store: the run ledger is the record, Flower takes
        # states (STARTED included) from task events, and the Redis backend counts a
        # chord's parts without stored results. Storing them cost a GET, SET and PUBLISH
        # per state, twice a task (bench/RESULTS.md).
        "task_ignore_result": True,
        # loaded by name only: pipeline/worker/consumer.py (tests/test_upstream_pins.py resolves it)
        "worker_consumer": "pipeline.worker.consumer:BatchedEventsConsumer",
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": True,
        "worker_log_format": LOG_FORMAT,  # run id and task key on every line (pipeline/worker/logcontext.py)
        "worker_task_log_format": TASK_LOG_FORMAT,
        "worker_redirect_stdouts": True,
        "enable_utc": True,
        "timezone": "UTC",
        "broker_channel_error_retry": True,
        # beat_schedule.py's schedule, the TickScheduler, the state file: plain
        # `celery -A pipeline beat` runs the beat `python cli.py beat` runs
        **beat_config(settings),
    }


def broker_transport(url: str | None) -> dict:
    """Our kombu transport for a plain ``redis://`` broker (see :mod:`pipeline.worker.kombu_redis`).

    Other schemes (``rediss://``, sockets, sentinel) keep kombu's own transport. The string is
    the only reference to pipeline/worker/kombu_redis.py (tests/test_upstream_pins.py resolves it).
    """
    return {"broker_transport": "pipeline.worker.kombu_redis:Transport" if (url or "").startswith("redis://") else None}


def configure(app: Celery, settings: Settings) -> Celery:
    """Apply ``settings`` to ``app`` (used again by the CLI once it knows the broker URL)."""
    app.conf.update(celery_config(settings))
    return app


install_log_context()  # before any Celery logging is set up: the format names its fields
app = configure(Celery("pipeline", include=["pipeline.worker.tasks", "pipeline.schedule.tick_task", "pipeline.runs.fanout"]), get_settings())
# Worker bootsteps, loaded by name (tests/test_upstream_pins.py resolves every one):
app.steps["worker"].add("pipeline.worker.liveness:WorkerRecordStep")  # the worker's record of its queues
app.steps["worker"].add("pipeline.worker.redis_checks:PersistenceCheckStep")  # warns if Redis would lose runs
app.steps["worker"].add("pipeline.notify.sender:NotifySenderStep")  # delivers due notifications
