"""A task's start in one round trip: begin it, and read its run's parameters and inputs.

A worker process keeps each run's parameters (with 2000 alphas, a 40 KB JSON document)
after the first task of the run it executes, keyed by the run's ``created`` time and its
restart count (a restart may follow a fix of the record), so a run id recorded anew
after a prune, or restarted, is never served stale parameters. The ledger sends them
again only when that version no longer matches the one the worker knows.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from pipeline.definition import flow
from pipeline.ledger.records import Ledger
from pipeline.ledger.versions import current_digest, version_name
from pipeline.ledger.values import Begin

CACHED_RUNS = 16
"""Runs whose parameters a worker process keeps (least recently used dropped first)."""

_cache: "OrderedDict[str, tuple[str, dict]]" = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class TaskStart:
    """What a task needs once :func:`start_task` has begun it."""

    begin: Begin
    params: dict
    artifacts: str
    inputs: dict[str, Any]
    """Stored outputs of the task's upstream tasks."""
    own_output: Any = None
    """The task's own stored output (what a ``success`` verdict returns again)."""
    files: dict[str, dict] = field(default_factory=dict)
    """Upstream task key -> ``{file name: {size, sha256}}``: what the files it reads were
    when written (see :class:`pipeline.worker.taskfiles.LedgerFileBook`)."""


def _known(run_id: str) -> tuple[str, dict] | None:
    with _lock:
        entry = _cache.get(run_id)
        if entry is not None:
            _cache.move_to_end(run_id)
        return entry


def _remember(run_id: str, created: str, params: dict) -> None:
    with _lock:
        _cache[run_id] = (created, params)
        _cache.move_to_end(run_id)
        while len(_cache) > CACHED_RUNS:
            _cache.popitem(last=False)


def _upstream(key: str, params: dict | None) -> list[str]:
    if params is None:
        return []
    try:
        return flow.upstream(key, len(params["alphas"]))
    except ValueError:  # not a key of this run: begin says "missing"
        return []


class VersionMismatch(Exception):
    """The run was recorded under another flow version than the code of this worker: this
    worker must not compute any of its tasks. The message names both versions."""


def version_mismatch(book: Ledger, run_id: str, mine: str) -> VersionMismatch:
    """The error for a task of ``run_id`` met by a worker whose code has digest ``mine``."""
    run = book.get_run(run_id) or {}
    theirs = run.get("digest") or ""
    wanted = version_name(int(run["version"]) if run.get("version") else None, theirs)
    return VersionMismatch(f"run {run_id} was submitted under flow {wanted}, this worker runs "
                           f"{version_name(book.version_of(mine), mine)}")


def start_task(book: Ledger, run_id: str, key: str, task_id: str = "") -> TaskStart:
    """Begin ``key`` (see :meth:`Ledger.begin_task`) and read what it needs, in one round trip
    when this process already knows the run (two the first time). ``task_id``: the Celery
    id of the message being executed.

    Raises :class:`VersionMismatch`, before anything is recorded or computed, when the run
    was submitted under another flow-version digest than this process's code: the check
    is part of the same atomic begin."""
    known = _known(run_id)
    created, params = known if known else ("", None)
    upstream = _upstream(key, params)
    mine = current_digest()
    got = book.begin_read(run_id, key, [key, *upstream], created, task_id, digest=mine)
    if got.begin.verdict == "version":
        raise version_mismatch(book, run_id, mine)
    if got.params is not None:  # first task of this run here, or the run was recorded anew
        params = got.params
        _remember(run_id, got.created, params)
        upstream = _upstream(key, params)
        if got.begin.verdict == "run":
            inputs, files = book.outputs_and_files(run_id, upstream)
            return TaskStart(got.begin, params, got.artifacts, inputs, files=files)
    inputs = {k: got.outputs[k] for k in upstream if k in got.outputs}
    files = {k: got.files[k] for k in upstream if k in got.files}
    return TaskStart(got.begin, params or {}, got.artifacts, inputs, got.outputs.get(key), files)
