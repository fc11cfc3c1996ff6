"""Run id and task key on every line a worker logs, so its log can be searched by run.

Celery's worker log format (``worker_log_format`` and ``worker_task_log_format``, see
:data:`LOG_FORMAT`) names ``%(run_id)s`` and ``%(task_key)s``. A log record factory,
installed once per process, gives every record those two attributes: the run id and
task key of the task the logging thread is executing (``-`` outside a task). The task
is known from Celery's ``task_prerun`` signal to its ``task_postrun`` one, both sent in
the thread that runs the task (so a threads pool attributes each line to its own task),
which brackets the stage's printed lines (Celery logs them through its stdout
redirection) and Celery's own report of the task's failure with its traceback.

A factory rather than a handler's filter: every record gets the attributes whatever
handler, logger or process (beat and Flower share the app's format) writes it.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from celery import signals

NO_TASK = "-"
"""What a line logged outside a stage task shows for run id and task key."""

LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(run_id)s %(task_key)s: %(message)s"
"""The worker's log format: Celery's default with the run id and task key before the message."""

TASK_LOG_FORMAT = ("[%(asctime)s: %(levelname)s/%(processName)s] %(run_id)s %(task_key)s: "
                   "%(task_name)s[%(task_id)s]: %(message)s")
"""The format of Celery's task logger (``worker_task_log_format``), likewise."""

_local = threading.local()
_install_lock = threading.Lock()
_installed = False


def current() -> tuple[str, str]:
    """``(run id, task key)`` of the task this thread executes, ``("-", "-")`` outside one."""
    return getattr(_local, "run_id", NO_TASK), getattr(_local, "task_key", NO_TASK)


def _task_started(task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None,
                  **_: Any) -> None:
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    args = list(args) if isinstance(args, (list, tuple)) else []
    run_id = kwargs.get("run_id", args[0] if args else None)
    key = kwargs.get("key", args[1] if len(args) > 1 else None)
    _local.run_id = str(run_id) if run_id is not None else NO_TASK
    _local.task_key = str(key) if key is not None else NO_TASK


def _task_ended(**_: Any) -> None:
    _local.run_id = _local.task_key = NO_TASK


def install() -> None:
    """Give every log record of this process ``run_id`` and ``task_key`` (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        make_record = logging.getLogRecordFactory()

        def record_with_task(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            record.run_id, record.task_key = current()
            return record

        logging.setLogRecordFactory(record_with_task)
        signals.task_prerun.connect(_task_started, weak=False)
        signals.task_postrun.connect(_task_ended, weak=False)
        _installed = True
