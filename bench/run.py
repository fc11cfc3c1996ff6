#!/usr/bin/env python
"""Benchmark the orchestrator against plain Python, a bare Celery canvas and the critical path.

    python bench/run.py [--quick] [--workloads W1,E,W2,W3,W4,W5,W1E,W2E,W6] [--reps N]

Starts its own redis-server on a free port and its own workers (ready before any timing),
prints every measurement (median of --reps runs, baselines interleaved) and RATIO lines
with the targets, then stops everything it started. See bench/README.md.
"""
from __future__ import annotations

import argparse
import platform
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402  (puts the project and tests/ on sys.path)
from bench.workloads import Sizes, run_all  # noqa: E402

ALL = ("W1", "E", "W2", "W3", "W4", "W5", "W1E", "W2E", "W6")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (the smoke test)")
    parser.add_argument("--workloads", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 3; quick 1)")
    parser.add_argument("--w1-sleep", type=float, default=None, help="override W1's --sleep")
    parser.add_argument("--w2-alphas", type=int, default=None, help="override W2's number of alphas")
    parser.add_argument("--w3-alphas", type=int, default=None, help="override W3's number of alphas")
    parser.add_argument("--w4-samples", type=int, default=None, help="override W4's --n-samples")
    parser.add_argument("--w6-samples", type=int, default=None, help="override W6's --n-samples")
    args = parser.parse_args(argv)
    args.workloads = {w.strip().upper() for w in args.workloads.split(",") if w.strip()}
    unknown = args.workloads - set(ALL)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))} (choose from {', '.join(ALL)})")
    return args


def versions() -> str:
    from importlib.metadata import version

    libs = ", ".join(f"{name} {version(name)}" for name in ("celery", "kombu", "redis", "scikit-learn", "numpy"))
    import subprocess

    server = subprocess.run([harness.conftest.redis_binary(), "--version"], capture_output=True, text=True).stdout
    return f"python {platform.python_version()}, {libs}; {server.split(' sha=')[0].strip()}"


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    sizes = Sizes.make(args.quick, args.reps)
    overrides = {k: v for k, v in vars(args).items() if k.startswith(("w1_", "w2_", "w3_", "w4_", "w6_")) and v is not None}
    sizes = replace(sizes, **overrides)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops what we started
    import os

    print(f"pipeline benchmark {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; nproc {os.cpu_count()}; {versions()}")
    print(f"workloads {','.join(w for w in ALL if w in args.workloads)}; reps {sizes.reps}"
          f"{' (quick sizes)' if sizes.quick else ''}; load {harness.load_average()}", flush=True)
    t0 = time.perf_counter()
    run_all(args.workloads, sizes, out=lambda line: print(line, flush=True))
    print(f"\nbenchmark done in {time.perf_counter() - t0:.0f} s; load {harness.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
