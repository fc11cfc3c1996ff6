"""W5 and W1e: the embedded default as a user starts it (``python cli.py sweep``, no broker set).

W5: 12 alphas at 200,000 rows through the embedded stack against ``--local`` (one process),
and against an embedded stack whose worker is the threads pool of 10 the stack ran before
issue 23 (its baseline, in the same run). W1e: W1's ``--sleep`` sweep through the embedded
default. Memory: RSS and PSS of every stack process, idle right after start and at the peak
of W5, for both stacks.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psutil

from bench import harness
from bench.harness import CLI, ROOT, alphas, interleaved

W5_ALPHAS = 12
W5_SAMPLES = 200_000
THREADS_ARGV_TAIL = ["worker", "--pool", "threads", "--concurrency", "10", "--without-mingle"]
"""The embedded worker's command before issue 23 (one process, a threads pool of 10): the baseline."""


def stack_env(state: Path, artifacts: Path) -> dict[str, str]:
    """The environment of a user with no broker set: the embedded stack in ``state``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PIPELINE_"))}
    return {**base, "PIPELINE_STATE_DIR": str(state), "PIPELINE_ARTIFACTS": str(artifacts)}


def start_stack(state: Path, artifacts: Path, threads: bool) -> None:
    """Start an embedded stack in ``state`` with today's worker, or the threads baseline's."""
    from pipeline.embedded import stack
    from pipeline.embedded.connect import WORKER_MODULE, embedded_worker_argv
    from pipeline.settings import Settings

    settings = Settings.from_env(stack_env(state, artifacts))
    argv = [sys.executable, "-m", WORKER_MODULE, *THREADS_ARGV_TAIL] if threads else embedded_worker_argv(settings)
    saved = {k: os.environ.pop(k) for k in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND") if k in os.environ}
    try:
        stack.ensure_stack(settings, argv)
    finally:
        os.environ.update(saved)


def stop_stack(state: Path, artifacts: Path) -> None:
    subprocess.run([sys.executable, CLI, "stop"], cwd=ROOT, env=stack_env(state, artifacts),
                   capture_output=True, timeout=120)


def stack_processes(state: Path) -> dict[str, psutil.Process]:
    """The stack's live processes by name: redis, supervisor, worker and its pool children."""
    from pipeline.embedded.detached import read_record

    found: dict[str, psutil.Process] = {}
    for name in ("redis", "supervisor", "worker"):
        record = read_record(state, name)
        try:
            proc = psutil.Process(record[0]) if record else None
        except psutil.NoSuchProcess:
            continue
        if proc is None:
            continue
        found[name] = proc
        if name == "worker":
            for i, child in enumerate(sorted(proc.children(recursive=True), key=lambda p: p.pid)):
                found[f"worker child {i + 1}"] = child
    return found


def memory_mib(state: Path) -> dict[str, tuple[float, float]]:
    """(RSS, PSS) in MiB of each stack process now."""
    out = {}
    for name, proc in stack_processes(state).items():
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[name] = (info.rss / 2**20, info.pss / 2**20)
    return out


class PeakMemory(harness.PeriodicSampler):
    """Peak RSS per process and peak total PSS of a stack, sampled every ``interval`` s in a thread."""

    def __init__(self, state: Path, interval: float = 0.2) -> None:
        super().__init__(interval)
        self.state = state
        self.rss: dict[str, float] = {}
        self.total_pss = 0.0

    def _sample_once(self) -> None:
        now = memory_mib(self.state)
        for name, (rss, _pss) in now.items():
            self.rss[name] = max(self.rss.get(name, 0.0), rss)
        self.total_pss = max(self.total_pss, sum(pss for _rss, pss in now.values()))


def show_memory(out: Callable[[str], None], title: str, mem: dict[str, tuple[float, float]]) -> float:
    """Print each process's RSS and PSS; return the total PSS."""
    total = sum(pss for _rss, pss in mem.values())
    out(f"  {title}: total PSS {total:.0f} MiB, RSS sum {sum(r for r, _p in mem.values()):.0f} MiB")
    for name, (rss, pss) in mem.items():
        out(f"    {name:<20} RSS {rss:6.1f}  PSS {pss:6.1f}")
    return total


SHRINK_WAIT = 150.0
"""Seconds W5 waits for the embedded worker's pool to shrink back (Celery: about 30-60 s idle)."""


def wait_for_one_child(state: Path) -> bool:
    """Wait until the stack's worker has one pool process left; False after ``SHRINK_WAIT`` s."""
    deadline = time.monotonic() + SHRINK_WAIT
    while time.monotonic() < deadline:
        if sum(name.startswith("worker child") for name in stack_processes(state)) <= 1:
            return True
        time.sleep(1.0)
    return False


def counting_cores(fn: Callable[[], float], state: Path, used: list[float]) -> Callable[[], float]:
    """``fn`` that also appends the cores the stack's worker used meanwhile (its processes' CPU
    seconds over the wall time): what a loaded machine still shows of the parallelism."""
    from pipeline.embedded.detached import read_record

    def measure() -> float:
        pid = read_record(state, "worker")[0]
        before = harness.cpu_seconds([pid])
        elapsed = fn()
        used.append((harness.cpu_seconds([pid]) - before) / elapsed)
        return elapsed

    return measure


def w5(bench, work: Path) -> None:
    """12 alphas at 200,000 rows: embedded default vs --local vs the old threads-pool stack."""
    s = bench.sizes
    n_samples = 5_000 if s.quick else W5_SAMPLES
    values = alphas(W5_ALPHAS)
    art = bench.root
    new, old = work / "embedded-prefork", work / "embedded-threads"
    bench.out(f"\n== W5: {W5_ALPHAS} alphas, --n-samples {n_samples}, `python cli.py sweep` with no broker set "
              f"(nproc {os.cpu_count()})  (load {harness.load_average()})")
    try:
        for state, threads in ((new, False), (old, True)):
            start_stack(state, art, threads)
            time.sleep(3.0)  # let the worker finish starting before its idle memory is read
        idle = {name: show_memory(bench.out, f"idle right after start, {name}", memory_mib(state))
                for name, state in (("embedded default (prefork)", new), ("before: threads -c 10", old))}
        for state in (new, old):  # warm: the first sweep of a stack imports the stages' libraries
            bench.ours_cli(values[:2], n_samples=1000, env=stack_env(state, art))
        cores: dict[str, list[float]] = {"new": [], "old": []}
        with PeakMemory(new) as peak_new, PeakMemory(old) as peak_old:
            samples = interleaved(s.reps, {
                "--local (one process)": lambda: bench.ours_cli(values, n_samples, env=stack_env(new, art),
                                                                extra=["--local"]),
                "embedded default": counting_cores(
                    lambda: bench.ours_cli(values, n_samples, env=stack_env(new, art)), new, cores["new"]),
                "embedded, before (threads -c 10)": counting_cores(
                    lambda: bench.ours_cli(values, n_samples, env=stack_env(old, art)), old, cores["old"]),
            })
        for sample in samples.values():
            bench.show(sample)
        local = samples["--local (one process)"].median
        bench.judge("W5 embedded default / --local", samples["embedded default"].median / local, 0.65)
        bench.judge("W5 embedded before (threads) / --local",
                    samples["embedded, before (threads -c 10)"].median / local, None)
        for key, name in (("new", "embedded default"), ("old", "embedded before (threads)")):
            bench.judge(f"W5 cores used by the worker, {name}", sorted(cores[key])[len(cores[key]) // 2], None,
                        "cores", f"(its CPU s / wall s; runs {', '.join(f'{c:.2f}' for c in cores[key])}) ")
        bench.out("  peak RSS (MiB) during W5, sampled every 0.2 s:")
        for name, mib in peak_new.rss.items():
            bench.out(f"    embedded default {name:<20} {mib:7.1f}")
        bench.judge("W5 largest process of the embedded default (RSS)", max(peak_new.rss.values()), 250, "MiB")
        bench.judge("W5 peak total PSS, embedded default", peak_new.total_pss, None, "MiB")
        bench.judge("W5 peak total PSS, before (threads)", peak_old.total_pss, None, "MiB")
        bench.judge("idle stack PSS right after start, default minus before", idle["embedded default (prefork)"]
                    - idle["before: threads -c 10"], None, "MiB")
        shrunk = wait_for_one_child(new)
        bench.out(f"  the pool {'shrank to one process' if shrunk else 'did NOT shrink to one process'} "
                  f"after the sweeps (waited up to {SHRINK_WAIT:g} s)")
        settled = {name: show_memory(bench.out, f"idle after the sweeps, {name}", memory_mib(state))
                   for name, state in (("embedded default (prefork)", new), ("before: threads -c 10", old))}
        bench.judge("idle stack PSS after work, default minus before", settled["embedded default (prefork)"]
                    - settled["before: threads -c 10"], 100, "MiB")
    finally:
        for state in (new, old):
            stop_stack(state, art)


def w1_embedded(bench, work: Path) -> None:
    """W1's six-alpha --sleep sweep through the embedded default (the nine cleanups need slots
    too), and through the threads-pool stack of before, interleaved."""
    s = bench.sizes
    critical = 5 * s.w1_sleep
    art = bench.root
    stacks = {"embedded default": work / "embedded-w1", "embedded, before (threads -c 10)": work / "embedded-w1-threads"}
    bench.out(f"\n== W1e: six alphas, --sleep {s.w1_sleep:g}, `python cli.py sweep` with no broker set; "
              f"critical path {critical:g} s  (load {harness.load_average()})")
    try:
        for name, state in stacks.items():
            start_stack(state, art, threads="before" in name)
            bench.ours_cli(alphas(6), env=stack_env(state, art))  # warm, untimed (no sleep: the pool stays small)
        samples = interleaved(s.reps, {
            name: (lambda state=state: bench.ours_cli(alphas(6), sleep=s.w1_sleep, env=stack_env(state, art)))
            for name, state in stacks.items()})
    finally:
        for state in stacks.values():
            stop_stack(state, art)
    for sample in samples.values():
        bench.show(sample)
    bench.judge("W1e embedded default sweep command / critical path",
                samples["embedded default"].median / critical, 1.10)
    bench.judge("W1e embedded before (threads) / critical path",
                samples["embedded, before (threads -c 10)"].median / critical, None)


def w2_embedded(bench, work: Path) -> None:
    """W2's 200 small alphas through the embedded default, as a user runs them, against
    ``--local`` (issue 23 item 3: at most 1.5 x), interleaved."""
    s = bench.sizes
    values = alphas(s.w2_alphas)
    art = bench.root
    state = work / "embedded-w2"
    bench.out(f"\n== W2e: {len(values)} alphas, `python cli.py sweep` with no broker set against --local  "
              f"(load {harness.load_average()})")
    try:
        start_stack(state, art, threads=False)
        bench.ours_cli(values[:2], env=stack_env(state, art))  # warm, untimed
        samples = interleaved(s.reps, {
            "--local (one process)": lambda: bench.ours_cli(values, env=stack_env(state, art), extra=["--local"]),
            "embedded default": lambda: bench.ours_cli(values, env=stack_env(state, art)),
        })
    finally:
        stop_stack(state, art)
    for sample in samples.values():
        bench.show(sample)
    bench.judge("W2e embedded default / --local",
                samples["embedded default"].median / samples["--local (one process)"].median, 1.5)
