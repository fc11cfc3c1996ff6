#!/usr/bin/env python
"""Interleaved A/B of two checkouts' workers on the same wide sweep.

    python bench/ab_trees.py DIR_A DIR_B [--alphas 200] [--reps 9]

Starts one redis-server and, from each checkout, ``python cli.py worker --pool prefork
--concurrency 2`` on its own queue (``a`` and ``b``). Then runs sweeps submitted from this
checkout, alternating A, B and plain Python (the order of A and B swapped every rep), and
prints each median and B/A. A change to the worker side shows up as B/A below 1; running
the same code as A and B shows the noise (about 3 % here). Make DIR_A with
``git worktree add /tmp/a HEAD``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.plain import run_plain  # noqa: E402


def start_worker(tree: str, queue: str, url: str, log: Path) -> subprocess.Popen:
    """The worker of checkout ``tree`` on ``queue``, ready."""
    argv = [sys.executable, "cli.py", "worker", "--pool", "prefork", "--concurrency", "2", "--label", queue]
    proc = subprocess.Popen(argv, cwd=tree, env=harness.pipeline_env(url), stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    harness.wait_ready(proc, log)
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree_a")
    parser.add_argument("tree_b")
    parser.add_argument("--alphas", type=int, default=200)
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pipeline-ab-"))
    server = harness.start_redis(work / "redis")
    os.environ.update({"CELERY_BROKER_URL": server.url, "CELERY_RESULT_BACKEND": server.url})
    from pipeline.connect import connect
    from pipeline.runs import RunRequest, submit_run, wait_for_run
    from pipeline.settings import get_settings

    ledger = connect(get_settings(), announce=lambda _m: None).ledger
    root = work / "artifacts"
    root.mkdir()
    values = harness.alphas(args.alphas)
    workers = [start_worker(tree, queue, server.url, work / f"{queue}.log")
               for tree, queue in ((args.tree_a, "a"), (args.tree_b, "b"))]

    def sweep(queue: str) -> float:
        t0 = time.perf_counter()
        run_id = submit_run(ledger, RunRequest(alphas=values, artifacts_root=root, label=queue)).run_id
        state = wait_for_run(ledger, run_id)
        elapsed = time.perf_counter() - t0
        if state != "Success":
            raise RuntimeError(f"run {run_id} on queue {queue} ended {state}")
        shutil.rmtree(root / run_id, ignore_errors=True)
        return elapsed

    def plain() -> float:
        t0 = time.perf_counter()
        run_plain(root, values)
        return time.perf_counter() - t0

    measure = {"a": lambda: sweep("a"), "b": lambda: sweep("b"), "plain": plain}
    times: dict[str, list[float]] = {name: [] for name in measure}
    try:
        for fn in measure.values():
            fn()  # warm-up
        for rep in range(args.reps):
            for name in (["a", "b", "plain"] if rep % 2 == 0 else ["b", "a", "plain"]):
                times[name].append(measure[name]())
    finally:
        for proc in workers:
            harness.stop_process(proc)
        harness.stop_process(server.proc)
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:<6} median {medians[name]:.3f} s   runs {' '.join(f'{v:.2f}' for v in values)}")
    print(f"A / plain {medians['a'] / medians['plain']:.2f} x   B / plain {medians['b'] / medians['plain']:.2f} x   "
          f"B / A {medians['b'] / medians['a']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
