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
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.workloads import Bench, Sizes  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree_a")
    parser.add_argument("tree_b")
    parser.add_argument("--alphas", type=int, default=200)
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pipeline-ab-"))
    bench = Bench(work, Sizes.make(False, args.reps), set(), out=lambda _line: None)  # Redis, no workers
    values = harness.alphas(args.alphas)
    workers = [harness.project_worker(bench.url, work / f"{queue}.log", "prefork", 2, label=queue, tree=Path(tree))
               for tree, queue in ((args.tree_a, "a"), (args.tree_b, "b"))]
    measure = {"a": lambda: bench.ours_inprocess(values, label="a"),
               "b": lambda: bench.ours_inprocess(values, label="b"),
               "plain": lambda: bench.plain(values)}
    times: dict[str, list[float]] = {name: [] for name in measure}
    try:
        for worker in workers:
            harness.wait_ready(worker.proc, worker.log)
        for fn in measure.values():
            fn()  # warm-up
        for rep in range(args.reps):
            for name in (["a", "b", "plain"] if rep % 2 == 0 else ["b", "a", "plain"]):
                times[name].append(measure[name]())
    finally:
        for worker in workers:
            worker.stop()
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:<6} median {medians[name]:.3f} s   runs {' '.join(f'{v:.2f}' for v in values)}")
    print(f"A / plain {medians['a'] / medians['plain']:.2f} x   B / plain {medians['b'] / medians['plain']:.2f} x   "
          f"B / A {medians['b'] / medians['a']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
