"""Build a run's Celery canvas: a pure function of the run's shape, no side effects.

chain(download, preprocess, chord(group(chain(train[i], evaluate[i]) for each alpha),
group(cleanup_file[j] for each intermediate file))). For a restart, ``only`` names the
tasks that must run again and the canvas holds just those, in the same order.
"""
from __future__ import annotations

from typing import Iterable

from celery import Celery, chain, chord, group, signature
from celery.canvas import Signature

from pipeline.definition import flow
TASK_NAMES = {stage: f"pipeline.{stage}" for stage in flow.STAGES}
"""Stage -> registered Celery task name."""


def task_signature(run_id: str, key: str, queue: str, app: Celery | None = None) -> Signature:
    """Immutable signature of task ``key``: the message carries only run id and key."""
    stage = flow.stage_of(key)
    kwargs = {"run_id": run_id, "key": key}
    return signature(TASK_NAMES[stage], kwargs=kwargs, immutable=True, queue=queue, app=app)


def _one_or_group(sigs: list[Signature], app: Celery | None) -> Signature:
    return sigs[0] if len(sigs) == 1 else group(sigs, app=app)


def build_canvas(
    run_id: str,
    n_branches: int,
    queue: str,
    only: Iterable[str] | None = None,
    app: Celery | None = None,
) -> Signature | None:
    """The canvas for ``run_id`` with ``n_branches`` alphas on ``queue``; None if nothing to run.

    ``only``: if given, the task keys to include (a restart's Failed/TriggerFailed tasks).
    ``app``: the Celery app the signatures belong to (default: the current app).
    """
    if n_branches < 1:
        raise ValueError("a run needs at least one alpha")
    wanted = set(flow.task_keys(n_branches) if only is None else only)

    def sig(key: str) -> Signature:
        return task_signature(run_id, key, queue, app)

    steps = [sig(k) for k in (flow.DOWNLOAD, flow.PREPROCESS) if k in wanted]
    branches = []
    for i in range(n_branches):
        keys = [k for k in (flow.train_key(i), flow.evaluate_key(i)) if k in wanted]
        if keys:
            branches.append(sig(keys[0]) if len(keys) == 1 else chain(*map(sig, keys), app=app))
    cleanups = [sig(flow.cleanup_key(j)) for j in range(flow.n_cleanups(n_branches)) if flow.cleanup_key(j) in wanted]

    if branches and cleanups:
        steps.append(chord(group(branches, app=app), _one_or_group(cleanups, app), app=app))
    elif branches:
        steps.append(_one_or_group(branches, app))
    elif cleanups:
        steps.append(_one_or_group(cleanups, app))
    if not steps:
        return None
    return steps[0] if len(steps) == 1 else chain(*steps, app=app)
