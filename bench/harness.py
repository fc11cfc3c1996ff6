"""Processes and measurements the benchmarks share: Redis, workers, timing, RSS sampling.

Redis and the project's worker are started with the test suite's own helpers
(``tests/conftest.py``), so the benchmark runs the same commands the tests do.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import conftest  # noqa: E402  (tests/conftest.py: start_redis, start_worker, pipeline_env, ...)

RedisServer = conftest.RedisServer
start_redis = conftest.start_redis
stop_process = conftest.stop_process
pipeline_env = conftest.pipeline_env
CLI = conftest.CLI

BARE_QUEUE = "bench_bare"
"""Queue of the bare-canvas worker (never the project's default queue)."""


@dataclass
class Proc:
    """A long-running process the benchmark started (worker), with its log."""

    name: str
    proc: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc)


def _spawn(name: str, argv: list[str], url: str, log: Path, cwd: Path = ROOT) -> Proc:
    handle = open(log, "wb")
    proc = subprocess.Popen(argv, cwd=cwd, env=pipeline_env(url), stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return Proc(name, proc, log)


def project_worker(url: str, log: Path, pool: str, concurrency: int, label: str | None = None,
                   tree: Path = ROOT) -> Proc:
    """Start ``python cli.py worker --pool POOL --concurrency N [--label L]`` (see :func:`wait_ready`)
    from the checkout ``tree`` (default: this one)."""
    argv = [sys.executable, str(Path(tree) / "cli.py"), "worker", "--pool", pool, "--concurrency", str(concurrency)]
    argv += ["--label", label] if label else []
    return _spawn(f"worker[{pool} -c {concurrency}]", argv, url, log, cwd=Path(tree))


def bare_worker(url: str, log: Path, concurrency: int = 2) -> Proc:
    """Start ``celery -A bench.bare_tasks worker -P prefork -c N`` (see :func:`wait_ready`)."""
    argv = [sys.executable, "-m", "celery", "-A", "bench.bare_tasks", "worker", "-P", "prefork",
            "-c", str(concurrency), "-Q", BARE_QUEUE, "--loglevel", "INFO", "-n", f"bare.{os.getpid()}@%h"]
    return _spawn(f"bare worker[prefork -c {concurrency}]", argv, url, log)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` and their live children."""
    total = 0.0
    for pid in pids:
        try:
            procs = [psutil.Process(pid)]
            procs += procs[0].children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
    return total


def wait_ready(proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Wait until a Celery worker's log says `` ready.`` (its consumer is up)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if " ready." in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError(f"worker not ready in {timeout}s:\n{log.read_text(errors='replace')}")


# -- timing -------------------------------------------------------------------------------
@dataclass
class Sample:
    """Repeated wall-time measurements of one thing, in seconds."""

    name: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self) -> str:
        """``min..max`` and the relative spread, for the noise column."""
        lo, hi = min(self.values), max(self.values)
        rel = (hi - lo) / self.median * 100 if self.median else 0.0
        return f"{lo:.3f}..{hi:.3f} s (+-{rel / 2:.0f}%)"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """``(seconds, result)`` of calling ``fn``."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def interleaved(reps: int, measures: dict[str, Callable[[], float]]) -> dict[str, Sample]:
    """Run each measure once per repetition, rotating the order so drift hits all alike."""
    samples = {name: Sample(name) for name in measures}
    names = list(measures)
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].values.append(measures[name]())
    return samples


# -- memory ------------------------------------------------------------------------------
class PeriodicSampler:
    """Calls ``_sample_once`` every ``interval`` s in a thread while used as a context manager."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample_once(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample_once()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class RssSampler(PeriodicSampler):
    """Peak resident memory of some processes and their children, sampled in a thread."""

    def __init__(self, roots: dict[str, int], interval: float = 0.05) -> None:
        super().__init__(interval)
        self.roots = dict(roots)
        self.peaks: dict[str, int] = {}

    def add(self, name: str, pid: int) -> None:
        """Also watch ``pid`` (and its children) under ``name``."""
        self.roots[name] = pid

    def _sample_once(self) -> None:
        for name, pid in list(self.roots.items()):
            for label, proc in _tree(name, pid):
                try:
                    rss = proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                self.peaks[label] = max(self.peaks.get(label, 0), rss)

    def mib(self) -> dict[str, float]:
        """Peak RSS by process label, in MiB."""
        return {label: rss / 2**20 for label, rss in sorted(self.peaks.items())}


def _tree(name: str, pid: int) -> Iterator[tuple[str, psutil.Process]]:
    try:
        root = psutil.Process(pid)
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    yield name, root
    for i, child in enumerate(sorted(children, key=lambda p: p.pid)):
        yield f"{name} child {i + 1}", child


def load_average() -> str:
    """The 1/5/15-minute load averages, for the noise notes."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def alphas(n: int) -> list[float]:
    """``n`` distinct positive alphas (the tutorial's six first)."""
    six = [1.0, 0.1, 0.01, 0.001, 0.0001, 0.00001]
    return six[:n] + [round(2.0 + 0.001 * i, 6) for i in range(max(0, n - 6))]


def alpha_args(values: Iterable[float]) -> list[str]:
    """The alphas as CLI words."""
    return [repr(float(a)) for a in values]
