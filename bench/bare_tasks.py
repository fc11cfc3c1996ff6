"""A bare Celery canvas of the same shape as the pipeline's, with no run record.

The baseline for "what our bookkeeping costs": the same stage functions
(:mod:`pipeline.definition.stages`), the same canvas shape
(chain(download, preprocess, chord(group(chain(train[i], evaluate[i])), group(cleanup[j])))),
the same Celery settings (:func:`pipeline.celery_app.celery_config`), but no ledger, no
log capture, no retry bookkeeping: outputs travel along the canvas as task results.

Run its worker with ``celery -A bench.bare_tasks worker -P prefork -c 2 -Q bench_bare``.
The last cleanup task pushes to ``bench:bare:<run id>:done`` so the benchmark can wait
with one BLPOP instead of polling Celery results.
"""
from __future__ import annotations

import time
from typing import Any

import redis
from celery import Celery, chain, chord, group
from celery.canvas import Signature

from pipeline.definition import stages
from pipeline.artifacts.rundir import RunDir
from pipeline.celery_app import celery_config
from pipeline.settings import get_settings
from pipeline.worker.start import quiet_task_lines

QUEUE = "bench_bare"

app = Celery("bench_bare")
app.conf.update(celery_config(get_settings()))
app.conf.task_default_queue = QUEUE
quiet_task_lines()  # as the project's worker runs by default (no --log-tasks): a like-for-like log

_client: redis.Redis | None = None


def done_key(run_id: str) -> str:
    """The list the last cleanup of ``run_id`` pushes to."""
    return f"bench:bare:{run_id}:done"


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(app.conf.broker_url, socket_timeout=30)
    return _client


@app.task(name="bare.download")
def download(root: str, run_id: str, n_samples: int) -> str:
    """Stage download_dataset; returns the dataset's name."""
    return stages.download_dataset(RunDir(root, run_id), n_samples=n_samples)


@app.task(name="bare.preprocess")
def preprocess(dataset: str, root: str, run_id: str) -> dict:
    """Stage preprocess_dataset; returns every name the later stages need."""
    train, test = stages.preprocess_dataset(RunDir(root, run_id), dataset)
    return {"dataset": dataset, "train": train, "test": test}


@app.task(name="bare.train")
def train(names: dict, root: str, run_id: str, alpha: float) -> dict:
    """Stage train_model for one alpha."""
    return {**names, "model": stages.train_model(RunDir(root, run_id), names["train"], alpha)}


@app.task(name="bare.evaluate")
def evaluate(names: dict, root: str, run_id: str) -> dict:
    """Stage evaluate_model for one alpha."""
    _, score = stages.evaluate_model(RunDir(root, run_id), names["model"], names["test"])
    return {**names, "score": score}


@app.task(name="bare.cleanup")
def cleanup(branches: list[dict], root: str, run_id: str, j: int) -> str:
    """Stage cleanup_file for the ``j``-th intermediate file (the tutorial's order)."""
    files = _files(branches)
    return cleanup_one(files[j], root, run_id, len(files))


def _files(branches: list[dict]) -> list[str]:
    first = branches[0]
    return [first["dataset"], *(b["model"] for b in branches), first["train"], first["test"]]


@app.task(name="bare.cleanup_one")
def cleanup_one(name: str, root: str, run_id: str, n_files: int) -> str:
    """Stage cleanup_file for one named file; the last of ``n_files`` signals the waiter."""
    stages.cleanup_file(RunDir(root, run_id), name)
    if _redis().incr(f"bench:bare:{run_id}:cleaned") == n_files:
        _redis().rpush(done_key(run_id), "1")
    return name


@app.task(name="bare.fan_out")
def fan_out(branches: list[dict], root: str, run_id: str) -> int:
    """A compact chord body: send the cleanup group (as pipeline.runs.fanout does for ours)."""
    files = _files(branches)
    group([cleanup_one.si(name, root, run_id, len(files)) for name in files], app=app).apply_async()
    return len(files)


def bare_canvas(root: str, run_id: str, alphas: list[float], n_samples: int, compact: bool = False) -> Signature:
    """The same-shaped canvas over the bare tasks.

    ``compact``: the chord body is one ``bare.fan_out`` task that sends the cleanup group
    when the chord completes, instead of the group itself (which Celery copies into every
    header message: O(n^2) bytes).
    """
    header = group([chain(train.s(root, run_id, a), evaluate.s(root, run_id), app=app) for a in alphas], app=app)
    n_files = len(alphas) + 3
    if compact:
        body = fan_out.s(root, run_id)
    else:
        body = group([cleanup.s(root, run_id, j) for j in range(n_files)], app=app)
    return chain(download.si(root, run_id, n_samples), preprocess.s(root, run_id), chord(header, body, app=app), app=app)


def run_bare(root: str, run_id: str, alphas: list[float], n_samples: int, timeout: float = 3600,
             compact: bool = False) -> Any:
    """Send the bare canvas and block until its last cleanup is done."""
    bare_canvas(root, run_id, alphas, n_samples, compact).apply_async()
    deadline = time.monotonic() + timeout
    while _redis().blpop([done_key(run_id)], timeout=5) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"bare canvas {run_id} did not finish in {timeout} s")
    _redis().delete(done_key(run_id), f"bench:bare:{run_id}:cleaned")
