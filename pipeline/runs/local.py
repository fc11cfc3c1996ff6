"""``--local``: the whole flow in this process, no broker, no ledger (the debug path).

Same stages, same order and same files as the distributed path; tasks run one after
another, so it is slow for large sweeps and useful for stepping through with a debugger.
"""
from __future__ import annotations

import sys
from contextlib import redirect_stdout

from pipeline.definition import stages
from pipeline.artifacts.rundir import RunDir
from pipeline.definition.naming import alpha_name
from pipeline.runs.submit import RunRequest


def run_local(request: RunRequest, run_id: str) -> dict[str, float]:
    """Run every stage of ``request`` here and now; return ``alpha name -> R^2``.

    What the stages print goes to stderr, so stdout carries only the result.
    """
    with redirect_stdout(sys.stderr):
        return _run(request, run_id)


def _run(request: RunRequest, run_id: str) -> dict[str, float]:
    run_dir = RunDir(request.artifacts_root, run_id).ensure()
    sleep = request.sleep
    dataset = stages.download_dataset(run_dir, n_samples=request.n_samples, tick=request.tick, sleep=sleep)
    train, test = stages.preprocess_dataset(run_dir, dataset, sleep=sleep)
    results: dict[str, float] = {}
    models: list[str] = []
    for alpha in request.alphas:
        model = stages.train_model(run_dir, train, alpha, sleep=sleep, fail_rate=request.fail_rate)
        models.append(model)
        _, score = stages.evaluate_model(run_dir, model, test, sleep=sleep)
        results[alpha_name(alpha)] = score
    for name in [dataset, *models, train, test]:
        stages.cleanup_file(run_dir, name, sleep=sleep)
    return results
