"""Thin Celery tasks: ledger bookkeeping, log capture and retry policy around a stage.

Messages carry only ``run_id`` and the task ``key``; everything else (parameters, the
artifacts directory, upstream outputs) is read from the run's ledger record, so a
restart can feed a task exactly what it had the first time.
"""
from __future__ import annotations

import functools
import logging
import time
import traceback
from datetime import datetime
from typing import Any, Callable

import redis
from celery import Task
from celery.exceptions import Ignore, Reject

from pipeline.definition import flow

from pipeline.definition import stages
from pipeline.artifacts.integrity import ArtifactError
from pipeline.artifacts.rundir import RunDir
from pipeline.cache.stages import run_cached
from pipeline.celery_app import app
from pipeline.ledger.records import Ledger, shared_ledger
from pipeline.ledger.values import SupersededAttempt, TaskState
from pipeline.worker.logcapture import capture_lines
from pipeline.redis_conn import is_full_redis
from pipeline.settings import get_settings, ledger_url
from pipeline.worker.taskfiles import LedgerFileBook
from pipeline.worker.taskstart import VersionMismatch, start_task
from pipeline.validation import BadInput, check_artifacts_root

log = logging.getLogger(__name__)

Body = Callable[[RunDir, dict, "int | None", dict], Any]


def ledger() -> Ledger:
    """The ledger in the Redis this app's results go to (one per URL per process)."""
    return shared_ledger(ledger_url(app.conf))


@functools.lru_cache(maxsize=64)
def run_dir_for(artifacts: str, run_id: str) -> RunDir:
    """The run's directory under ``artifacts`` (the root its record names), checked against
    ``PIPELINE_ARTIFACTS_ALLOWED``; BadInput if outside (not cached). Kept per process: the
    tasks of a run share it, and checking and resolving the root took a tenth of a
    millisecond a task.
    """
    return RunDir(check_artifacts_root(artifacts, get_settings().artifacts_allowed), run_id)


RECORD_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, redis.OutOfMemoryError)
"""Errors saying the run record's Redis stayed out of reach longer than the client's retries, or
is full (``maxmemory`` with ``noeviction`` refuses writes): the task runs again once it has room."""


def execute_stage(task: Task, run_id: str, key: str, body: Body) -> Any:
    """Run ``body`` for task ``key`` of ``run_id`` with bookkeeping; return its output.

    A task already recorded as Success (or Cached) returns its stored output without running
    again (this covers a redelivery after a crash). With the run's ``cache`` parameter the
    stage goes through the cache (:func:`pipeline.cache.stages.run_cached`): a hit ends the
    task Cached, with the entry it came from recorded. Failures retry while retries remain (a
    damaged or missing input file fails at once); after that the task is Failed and
    everything downstream TriggerFailed. The files it writes are recorded in the run
    record and the files it reads checked against it (:class:`LedgerFileBook`). Nothing runs for a
    cancelled run, nor for a stale message (one the run no longer expects since a restart
    re-sent its task under another Celery id), nor by a worker whose code is not the flow
    version the run was submitted under: the message goes back to its queue for a worker
    of that version (:func:`hand_back_to_matching_worker`).

    When the run record cannot be reached (Redis down for longer than the client's
    retries), nothing is recorded and the stage does not count as failed: the message is
    rejected for redelivery (or, if the broker is down too, comes back after the
    visibility timeout) and the task runs again once Redis is back.
    """
    try:
        return _execute_stage(task, run_id, key, body)
    except SupersededAttempt as exc:
        # This worker was declared dead (its heartbeat expired) while the attempt ran, and a
        # live worker took the message over: the ledger refused this late result. Ignore
        # acknowledges the message without a result, a retry or the chain's next task.
        log.warning("late attempt ignored: %s (the task was taken over by a live worker)", exc)
        raise Ignore() from exc
    except (*RECORD_UNREACHABLE, redis.ResponseError) as exc:
        if isinstance(exc, redis.ResponseError) and not is_full_redis(exc):
            raise
        log.warning("run record of %s unreachable during %s (%s: %s): handing the message back",
                    run_id, key, type(exc).__name__, exc)
        raise Reject(exc, requeue=True) from exc
    except VersionMismatch as exc:
        hand_back_to_matching_worker(run_id, key, exc)


_mismatched_runs: set[str] = set()


class HandedBack(Reject):
    """The Reject of a task handed back for a worker of its run's flow version."""


def _not_handed_back(record: logging.LogRecord) -> bool:
    """Celery logs every Reject with its traceback; a hand-back repeats every few seconds
    while no worker of the run's version is live, and is logged once per run already."""
    return not (record.exc_info and isinstance(record.exc_info[1], HandedBack))


logging.getLogger("celery.app.trace").addFilter(_not_handed_back)


def hand_back_to_matching_worker(run_id: str, key: str, exc: VersionMismatch) -> None:
    """Requeue the message of a task whose run this worker's code must not compute.

    The run waits for a worker of its own version (``sweep`` says when none is live);
    this one holds the message ``PIPELINE_VERSION_BACKOFF`` seconds first, so it does not
    spin on it, and logs the mismatch once per run.
    """
    if run_id not in _mismatched_runs:
        if len(_mismatched_runs) > 1000:
            _mismatched_runs.clear()
        _mismatched_runs.add(run_id)
        log.warning("not running %s: %s; handing its tasks back to the queue for a worker of that version",
                    key, exc)
    time.sleep(get_settings().version_backoff)
    raise HandedBack(str(exc), requeue=True) from exc


def _execute_stage(task: Task, run_id: str, key: str, body: Body) -> Any:
    book = ledger()
    start = start_task(book, run_id, key, task.request.id)  # begin + params + inputs: one round trip
    begin = start.begin
    if begin.verdict == "success":
        return start.own_output
    if begin.verdict != "run":
        log.warning("not running %s of run %s: %s", key, run_id, begin.verdict)
        return None
    params = start.params
    n_branches = len(params["alphas"])
    _, index = flow.parse_key(key, n_branches)
    inputs = start.inputs
    files = LedgerFileBook(start.files)
    try:
        run_dir = run_dir_for(start.artifacts, run_id).tracked(files, key)
    except BadInput as exc:  # a record pointing where this worker may not write: never retried
        book.finish_task(run_id, key, TaskState.FAILED, error=str(exc), trigger_failed=flow.downstream(key, n_branches),
                         task_id=task.request.id, attempt=begin.attempts)
        raise
    try:
        # each printed line is stored as it is printed: a killed process loses none of them
        with capture_lines(lambda line, ts: book.append_log(run_id, key, line, ts)):
            output, hit = run_cached(run_dir, key, params, index, inputs, lambda: body(run_dir, params, index, inputs))
    except RECORD_UNREACHABLE:
        raise  # a printed line could not be stored: not the stage's failure
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        retries = int(params.get("retries", 0))
        retry = task.request.retries < retries and not isinstance(exc, ArtifactError)  # a damaged file stays damaged
        book.append_log_lines(run_id, key, failed_attempt_lines(
            exc, begin.attempts, float(params.get("retry_delay", 0)) if retry else None))
        if retry:
            book.set_retrying(run_id, key, error, task_id=task.request.id, attempt=begin.attempts)
            raise task.retry(exc=exc, countdown=float(params.get("retry_delay", 0)), max_retries=retries)
        if book.finish_task(run_id, key, TaskState.FAILED, error=error, trigger_failed=flow.downstream(key, n_branches),
                            task_id=task.request.id, attempt=begin.attempts, files=files.pending):
            book.signal_finished(run_id)  # the run ended: wake its waiter now, not at its next poll
        raise
    state, source = (TaskState.SUCCESS, None) if hit is None else (
        TaskState.CACHED, {"key": hit.key, "run_id": hit.run_id, "task": hit.task})
    if book.finish_task(run_id, key, state, output=output, task_id=task.request.id, attempt=begin.attempts,
                        files=files.pending, cached_from=source):
        book.signal_finished(run_id)
    return output


def failed_attempt_lines(exc: BaseException, attempt: int, retry_in: float | None) -> list[str]:
    """What a failed attempt adds to the run's log under its task: a line saying which
    attempt failed (and when the retry comes), then the traceback, one record a line."""
    then = f", retry in {retry_in:g} s" if retry_in is not None else ""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return [f"attempt {attempt} failed{then}:"] + [line for line in text.splitlines() if line.strip()]


def _tick(params: dict) -> datetime | None:
    return datetime.fromisoformat(params["tick"]) if params.get("tick") else None


def _download(run_dir: RunDir, p: dict, _i: int | None, _inputs: dict) -> str:
    return stages.download_dataset(run_dir, n_samples=int(p["n_samples"]), tick=_tick(p), sleep=p["sleep"])


def _preprocess(run_dir: RunDir, p: dict, _i: int | None, inputs: dict) -> list[str]:
    return stages.preprocess_dataset(run_dir, inputs[flow.DOWNLOAD], sleep=p["sleep"])


def _train(run_dir: RunDir, p: dict, i: int, inputs: dict) -> str:
    train_name = inputs[flow.PREPROCESS][0]
    return stages.train_model(run_dir, train_name, p["alphas"][i], sleep=p["sleep"], fail_rate=p["fail_rate"])


def _evaluate(run_dir: RunDir, p: dict, i: int, inputs: dict) -> dict:
    model, test = inputs[flow.train_key(i)], inputs[flow.PREPROCESS][1]
    eval_name, score = stages.evaluate_model(run_dir, model, test, sleep=p["sleep"])
    return {"file": eval_name, "score": score}


def _cleanup(run_dir: RunDir, p: dict, j: int, inputs: dict) -> str:
    # Cleanup runs once every evaluation succeeded, so no writer of the run is left: what
    # is in the temp folder under the run's id was left by a writer killed mid-write.
    run_dir.discard_temp()
    source, position = flow.cleanup_source(j, len(p["alphas"]))
    name = inputs[source] if position is None else inputs[source][position]
    return stages.cleanup_file(run_dir, name, sleep=p["sleep"])


@app.task(bind=True, name="pipeline.download_dataset")
def download_dataset(self: Task, run_id: str, key: str) -> Any:
    """Celery task of stage ``download_dataset``."""
    return execute_stage(self, run_id, key, _download)


@app.task(bind=True, name="pipeline.preprocess_dataset")
def preprocess_dataset(self: Task, run_id: str, key: str) -> Any:
    """Celery task of stage ``preprocess_dataset``."""
    return execute_stage(self, run_id, key, _preprocess)


@app.task(bind=True, name="pipeline.train_model")
def train_model(self: Task, run_id: str, key: str) -> Any:
    """Celery task of stage ``train_model`` (one alpha)."""
    return execute_stage(self, run_id, key, _train)


@app.task(bind=True, name="pipeline.evaluate_model")
def evaluate_model(self: Task, run_id: str, key: str) -> Any:
    """Celery task of stage ``evaluate_model`` (one alpha)."""
    return execute_stage(self, run_id, key, _evaluate)


@app.task(bind=True, name="pipeline.cleanup_file")
def cleanup_file(self: Task, run_id: str, key: str) -> Any:
    """Celery task of stage ``cleanup_file`` (one intermediate file)."""
    return execute_stage(self, run_id, key, _cleanup)
