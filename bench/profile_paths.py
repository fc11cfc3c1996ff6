#!/usr/bin/env python
"""Where the time goes: cProfile of a worker (solo pool) and of the submit-and-wait path.

    python bench/profile_paths.py [--alphas 200] [--top 25] [--bare]

Starts its own redis-server and one worker under ``python -m cProfile`` (solo pool, so
every task runs in the profiled process), runs one sweep in this process under cProfile,
stops the worker and prints the heaviest functions of both. ``--bare`` profiles the bare
canvas's worker (bench/bare_tasks.py) instead, for comparison.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402


def top(stats_path: str, top_n: int, title: str) -> str:
    out = io.StringIO()
    stats = pstats.Stats(stats_path, stream=out)
    stats.strip_dirs()
    out.write(f"\n===== {title}: by internal time =====\n")
    stats.sort_stats("tottime").print_stats(top_n)
    out.write(f"\n===== {title}: by cumulative time =====\n")
    stats.sort_stats("cumulative").print_stats(top_n)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alphas", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--bare", action="store_true", help="profile the bare canvas's worker instead")
    parser.add_argument("--keep", type=Path, default=None, help="copy the .prof files into this folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pipeline-profile-"))
    server = harness.start_redis(work / "redis")
    os.environ.update({"CELERY_BROKER_URL": server.url, "CELERY_RESULT_BACKEND": server.url})
    worker_prof, submit_prof = str(work / "worker.prof"), str(work / "submit.prof")
    if args.bare:
        target = ["-m", "celery", "-A", "bench.bare_tasks", "worker", "-Q", harness.BARE_QUEUE, "-P", "solo"]
    else:
        # the worker `python cli.py worker --pool solo` runs, through `celery` itself: the CLI
        # leaves with os._exit, which would skip cProfile writing its file
        from pipeline.worker.start import worker_argv

        target = ["-m", "celery", "-A", "pipeline.worker.tasks", *worker_argv([], None, "solo")]
    argv = [sys.executable, "-m", "cProfile", "-o", worker_prof, *target, "--loglevel", "INFO"]
    log = work / "worker.log"
    proc = subprocess.Popen(argv, cwd=harness.ROOT, env=harness.pipeline_env(server.url),
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        harness.wait_ready(proc, log)
        root = work / "artifacts"
        values = harness.alphas(args.alphas)
        profiler = cProfile.Profile()
        t0 = time.perf_counter()
        if args.bare:
            from bench.bare_tasks import run_bare

            profiler.runcall(run_bare, str(root), "bare-profile", values, 100)
        else:
            from pipeline.embedded.connect import connect
            from pipeline.runs.submit import RunRequest, submit_run, wait_for_run
            from pipeline.settings import get_settings

            conn = connect(get_settings(), announce=lambda _m: None)
            request = RunRequest(alphas=values, artifacts_root=root)

            def submit_and_wait() -> str:
                return wait_for_run(conn.ledger, submit_run(conn.ledger, request).run_id)

            state = profiler.runcall(submit_and_wait)
            assert state == "Success", state
        print(f"sweep of {args.alphas} alphas: {time.perf_counter() - t0:.2f} s (profiled)")
        profiler.dump_stats(submit_prof)
    finally:
        harness.stop_process(proc)
        harness.stop_process(server.proc)
    print(top(worker_prof, args.top, "worker (solo pool)"))
    print(top(submit_prof, args.top, "submit and wait (this process)"))
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        for path in (worker_prof, submit_prof):
            shutil.copy(path, args.keep / Path(path).name)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
