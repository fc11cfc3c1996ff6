"""``--local``: the whole flow in this process, no broker, no ledger (the debug path).

Same stages, same order and same files as the distributed path; tasks run one after
another, so it is slow for large sweeps and useful for stepping through with a debugger.
Such a run is not recorded (recording needs the run ledger's Redis, which ``--local``
exists to do without): ``status``, ``logs`` and ``restart`` do not know it, and the
first stage that raises ends it.
"""
from __future__ import annotations

import sys
from contextlib import redirect_stdout
from typing import Any, Callable

from pipeline.definition import flow, stages
from pipeline.artifacts.rundir import RunDir
from pipeline.definition.naming import alpha_name
from pipeline.runs.submit import RunRequest

NOT_RECORDED = "--local runs without Redis, so the run is not recorded: status, logs and restart do not know it"
"""What the CLI says about a ``--local`` run's record (there is none)."""


class LocalStageFailed(Exception):
    """A stage of a ``--local`` run raised: which task, its alpha, the error, and how many
    tasks of the run were left unrun."""

    def __init__(self, key: str, alpha: str | None, error: str, not_run: int) -> None:
        super().__init__(f"{key}: {error}")
        self.key, self.alpha, self.error, self.not_run = key, alpha, error, not_run


def run_local(request: RunRequest, run_id: str) -> dict[str, float]:
    """Run every stage of ``request`` here and now; return ``alpha name -> R^2``.

    What the stages print goes to stderr, so stdout carries only the result. A stage that
    raises ends the run with :class:`LocalStageFailed`.
    """
    with redirect_stdout(sys.stderr):
        return _run(request, run_id)


def _run(request: RunRequest, run_id: str) -> dict[str, float]:
    run_dir = RunDir(request.artifacts_root, run_id).ensure()
    sleep = request.sleep
    total = len(flow.task_keys(len(request.alphas)))
    done = 0

    def stage(key: str, alpha: Any, call: Callable[[], Any]) -> Any:
        nonlocal done
        try:
            value = call()
        except Exception as exc:
            raise LocalStageFailed(key, None if alpha is False else alpha_name(alpha),
                                   f"{type(exc).__name__}: {exc}", total - done - 1) from exc
        done += 1
        return value

    dataset = stage(flow.DOWNLOAD, False, lambda: stages.download_dataset(
        run_dir, n_samples=request.n_samples, tick=request.tick, sleep=sleep))
    train, test = stage(flow.PREPROCESS, False, lambda: stages.preprocess_dataset(run_dir, dataset, sleep=sleep))
    results: dict[str, float] = {}
    models: list[str] = []
    for i, alpha in enumerate(request.alphas):
        model = stage(flow.train_key(i), alpha, lambda: stages.train_model(
            run_dir, train, alpha, sleep=sleep, fail_rate=request.fail_rate))
        models.append(model)
        _, score = stage(flow.evaluate_key(i), alpha, lambda: stages.evaluate_model(run_dir, model, test, sleep=sleep))
        results[alpha_name(alpha)] = score
    for j, name in enumerate([dataset, *models, train, test]):
        stage(flow.cleanup_key(j), False, lambda: stages.cleanup_file(run_dir, name, sleep=sleep))
    return results
