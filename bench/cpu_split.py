#!/usr/bin/env python
"""Where the CPU goes, process by process, in a wide sweep on a prefork worker.

    python bench/cpu_split.py [--alphas 200] [--reps 3] [--bare]

Starts its own redis-server and one prefork worker of concurrency 2 (the project's, or
the bare canvas's with ``--bare``), runs one warm-up sweep, then ``--reps`` sweeps, and
prints for each the wall time and the CPU milliseconds per task of the worker's main
process, each pool child, redis-server and this process (submitting and waiting). The
benchmark (bench/run.py) prints only their sum; this shows which process to look at.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.workloads import Bench, Sizes, n_tasks  # noqa: E402


def processes(worker_pid: int, redis_pid: int) -> dict[str, psutil.Process]:
    """The processes to measure, by name."""
    main = psutil.Process(worker_pid)
    found = {"worker main": main}
    for i, child in enumerate(main.children(recursive=True), 1):
        found[f"pool child {i}"] = child
    found["redis-server"] = psutil.Process(redis_pid)
    found["submit+wait"] = psutil.Process()
    return found


def cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alphas", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--bare", action="store_true", help="the bare canvas's worker instead of ours")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pipeline-cpu-split-"))
    bench = Bench(work, Sizes.make(False, args.reps), set(), out=lambda _line: None)  # Redis, no workers
    log = work / "worker.log"
    if args.bare:
        worker = harness.bare_worker(bench.url, log, 2)
    else:
        worker = harness.project_worker(bench.url, log, "prefork", 2)
    values = harness.alphas(args.alphas)
    sweep = (lambda: bench.bare(values)) if args.bare else (lambda: bench.ours_inprocess(values))
    try:
        harness.wait_ready(worker.proc, log)
        sweep()  # warm-up: imports and connections in every process
        tasks = n_tasks(args.alphas)
        for rep in range(1, args.reps + 1):
            procs = processes(worker.pid, bench.redis.proc.pid)
            before = {name: cpu(p) for name, p in procs.items()}
            t0 = time.perf_counter()
            sweep()
            wall = time.perf_counter() - t0
            split = {name: (cpu(p) - before[name]) / tasks * 1000 for name, p in procs.items()}
            print(f"rep {rep}: wall {wall:.2f} s; CPU ms per task: "
                  + ", ".join(f"{name} {ms:.2f}" for name, ms in split.items())
                  + f"; sum {sum(split.values()):.2f}", flush=True)
    finally:
        worker.stop()
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
