"""The workloads W1-W4 and E (embedded stack start-up; W5 and W1e in bench/embedded_default.py), each printing its result lines.

Every measured number is the median of ``reps`` repetitions; baselines run in the same
process, interleaved with the measured runs (:func:`bench.harness.interleaved`).
Lines that compare against a target start with ``RATIO`` so a script can pick them out.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from bench import cache_sweep, embedded_default, harness
from bench.harness import CLI, ROOT, RssSampler, Sample, alpha_args, alphas, interleaved, timed

W1_LABEL = "bench_w1"
"""W1 and E run on their own label, so their threads worker and W2-W4's prefork worker
can both be started (in parallel) before any timing."""

NAIVE_BARE_UP_TO = 400
"""The bare canvas with the plain group body is quadratic in alphas: measured only up to this."""


@dataclass
class Sizes:
    """Workload sizes; ``quick`` shrinks them for the smoke test."""

    w1_sleep: float = 1.0
    w2_alphas: int = 200
    w3_alphas: int = 2000
    w4_samples: int = 100_000
    w6_samples: int = 20_000
    reps: int = 3
    quick: bool = False

    @classmethod
    def make(cls, quick: bool, reps: int | None) -> "Sizes":
        sizes = cls(0.2, 8, 24, 5_000, 1_000, 1, True) if quick else cls()
        return replace(sizes, reps=reps or sizes.reps)


def n_tasks(n_alphas: int) -> int:
    """Tasks of a sweep: download, preprocess, 2 a branch, n + 3 cleanups."""
    return 2 + 2 * n_alphas + n_alphas + 3


class Bench:
    """Shared state: one Redis, the workers, the artifacts root, the ledger connection, the output."""

    def __init__(self, work: Path, sizes: Sizes, workloads: set[str], out: Callable[[str], None] = print) -> None:
        self.work, self.sizes, self.out = work, sizes, out
        self.redis = harness.start_redis(work / "redis")
        self.url = self.redis.url
        os.environ.update({"CELERY_BROKER_URL": self.url, "CELERY_RESULT_BACKEND": self.url})
        os.environ.pop("PIPELINE_STATE_DIR", None)
        self.root = work / "artifacts"
        self.root.mkdir()
        from pipeline.embedded.connect import connect
        from pipeline.settings import get_settings

        self.conn = connect(get_settings(), announce=lambda _m: None)
        self.procs: list[harness.Proc] = []
        self.threads = self.prefork = self.bare_proc = None
        t0 = time.perf_counter()
        if workloads & {"W1", "E"}:
            self.threads = self._start(harness.project_worker(self.url, work / "threads.log", "threads", 10, W1_LABEL))
        if workloads & {"W2", "W3", "W4", "W6"}:
            self.prefork = self._start(harness.project_worker(self.url, work / "prefork.log", "prefork", 2))
            self.bare_proc = self._start(harness.bare_worker(self.url, work / "bare.log", 2))
        for proc in self.procs:
            harness.wait_ready(proc.proc, proc.log)
        self.out(f"workers ready in {time.perf_counter() - t0:.1f} s: {', '.join(p.name for p in self.procs)}")

    def _start(self, proc: harness.Proc) -> harness.Proc:
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        """Stop every process this benchmark started."""
        for proc in self.procs:
            proc.stop()
        self.procs.clear()
        harness.stop_process(self.redis.proc)

    def judge(self, name: str, value: float, target: float | None, unit: str = "x", what: str = "") -> None:
        """Print one RATIO line, with the target verdict (not judged in --quick)."""
        verdict = ""
        if target is not None:
            verdict = "quick sizes, not judged" if self.sizes.quick else ("MET" if value <= target else "NOT MET")
            verdict = f"   target <= {target:g} {unit}: {verdict}"
        self.out(f"RATIO {name:<44} {value:8.2f} {unit}  {what}{verdict}")

    def show(self, sample: Sample) -> None:
        self.out(f"  {sample.name:<40} median {sample.median:8.3f} s   range {sample.spread()}")

    # -- the measured things ------------------------------------------------------------
    def ours_inprocess(self, values: list, n_samples: int = 100, sleep: float = 0.0, label: str | None = None,
                       cache: str = "off", root: Path | None = None, check: Callable[[str], None] | None = None) -> float:
        """submit_run + wait_for_run + run_results in this process (the worker already runs);
        ``cache``: the run's cache mode, ``root``: its artifacts root (default the bench's);
        ``check``: called with the run id once it ended, before its files are removed."""
        from pipeline.runs.submit import RunRequest, run_results, submit_run, wait_for_run

        root = root or self.root
        request = RunRequest(alphas=list(values), artifacts_root=root, n_samples=n_samples, sleep=sleep,
                             label=label, cache=cache)
        t0 = time.perf_counter()
        submitted = submit_run(self.conn.ledger, request)
        state = wait_for_run(self.conn.ledger, submitted.run_id)
        results = run_results(self.conn.ledger, submitted.run_id)
        elapsed = time.perf_counter() - t0
        if state != "Success" or len(results) != len(values):
            raise RuntimeError(f"run {submitted.run_id} ended {state} with {len(results)} results")
        if check is not None:
            check(submitted.run_id)
        shutil.rmtree(root / submitted.run_id, ignore_errors=True)
        return elapsed

    def ours_cli(self, values: list, n_samples: int = 100, sleep: float = 0.0, env: dict[str, str] | None = None,
                 command: str = "sweep", label: str | None = None, sampler: RssSampler | None = None,
                 extra: list[str] | None = None) -> float:
        """The whole ``python cli.py sweep|run ... --json`` command, as a user runs it (``extra``:
        more options, e.g. ``--local``)."""
        env = env or harness.pipeline_env(self.url, PIPELINE_ARTIFACTS=str(self.root))
        argv = [sys.executable, CLI, command, "--json", "--n-samples", str(n_samples), "--sleep", repr(sleep)]
        argv += ["--label", label] if label else []
        argv += extra or []
        if command == "sweep":
            argv += ["--alphas", *alpha_args(values)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if sampler:
            sampler.add("CLI (sweep command)", proc.pid)
        stdout, stderr = proc.communicate(timeout=3600)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{command} failed ({proc.returncode}):\n{stderr[-2000:]}")
        doc = json.loads(stdout)
        if doc["state"] != "Success" or len(doc["results"]) != len(values):
            raise RuntimeError(f"{command} ended {doc['state']} with {len(doc['results'])} results")
        shutil.rmtree(doc["artifacts"], ignore_errors=True)
        return elapsed

    def plain(self, values: list, n_samples: int = 100) -> float:
        from bench.plain import run_plain

        return timed(lambda: run_plain(self.root, values, n_samples))[0]

    def bare(self, values: list, n_samples: int = 100, compact: bool = True) -> float:
        from bench.bare_tasks import run_bare

        run_id = f"bare-{secrets.token_hex(4)}"
        elapsed = timed(lambda: run_bare(str(self.root), run_id, values, n_samples, compact=compact))[0]
        shutil.rmtree(self.root / run_id, ignore_errors=True)
        return elapsed

    def with_cpu(self, fn: Callable[[], float], pids: list[int], cpu: list[float]) -> Callable[[], float]:
        """``fn`` that also appends the CPU seconds ``pids`` (trees) used meanwhile to ``cpu``."""
        def measure() -> float:
            before = harness.cpu_seconds(pids)
            elapsed = fn()
            cpu.append(harness.cpu_seconds(pids) - before)
            return elapsed

        return measure

    # -- workloads ----------------------------------------------------------------------
    def w1(self) -> None:
        """Six alphas with sleep: wall against the critical path (5 stages x sleep)."""
        s = self.sizes
        critical = 5 * s.w1_sleep
        self.out(f"\n== W1: six alphas, --sleep {s.w1_sleep:g}, threads worker -c 10; critical path "
                 f"{critical:g} s  (load {harness.load_average()})")
        six = alphas(6)
        samples = interleaved(s.reps, {
            "sweep command (subprocess)": lambda: self.ours_cli(six, sleep=s.w1_sleep, label=W1_LABEL),
            "submission to result (in-process)": lambda: self.ours_inprocess(six, sleep=s.w1_sleep, label=W1_LABEL),
        })
        for sample in samples.values():
            self.show(sample)
        self.judge("W1 sweep command / critical path", samples["sweep command (subprocess)"].median / critical, 1.20)
        self.judge("W1 submission-to-result / critical path",
                   samples["submission to result (in-process)"].median / critical, 1.05)

    def embedded(self) -> None:
        """`python cli.py run` on a fresh embedded stack and a reused one, against a running broker."""
        s = self.sizes
        self.out(f"\n== E: embedded stack start-up, `python cli.py run --json`  (load {harness.load_average()})")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PIPELINE_"))}
        counter = iter(range(10_000))

        def embedded_env(state: Path) -> dict[str, str]:
            return {**base, "PIPELINE_STATE_DIR": str(state), "PIPELINE_ARTIFACTS": str(self.root)}

        def stop(state: Path) -> None:
            subprocess.run([sys.executable, CLI, "stop"], cwd=ROOT, env=embedded_env(state), capture_output=True,
                           timeout=60)

        reused_dir = self.work / "embedded-reused"
        started: list[Path] = [reused_dir]
        try:
            self.ours_cli([None], command="run", env=embedded_env(reused_dir))  # start it, untimed

            def fresh() -> float:
                state = self.work / f"embedded-fresh-{next(counter)}"
                started.append(state)
                try:
                    return self.ours_cli([None], command="run", env=embedded_env(state))
                finally:
                    stop(state)

            samples = interleaved(s.reps, {
                "run, broker+worker already running": lambda: self.ours_cli([None], command="run", label=W1_LABEL),
                "run, embedded stack first start": fresh,
                "run, embedded stack reused": lambda: self.ours_cli([None], command="run",
                                                                    env=embedded_env(reused_dir)),
            })
        finally:
            for state in started:
                stop(state)
        for sample in samples.values():
            self.show(sample)
        ext = samples["run, broker+worker already running"].median
        self.judge("E first start adds", samples["run, embedded stack first start"].median - ext, 3.0, "s")
        self.judge("E reused stack adds", samples["run, embedded stack reused"].median - ext, None, "s")

    def fan_out(self, label: str, n: int, target: float, sampler: RssSampler | None = None) -> dict[str, float]:
        """W2/W3: ``n`` alphas, no sleep, against plain Python and the bare canvas."""
        s = self.sizes
        values = alphas(n)
        tasks = n_tasks(n)
        self.out(f"\n== {label}: {n} alphas ({tasks} tasks), no sleep, prefork worker -c 2  "
                 f"(load {harness.load_average()})")
        ours_pids = [self.prefork.pid, self.redis.proc.pid]
        bare_pids = [self.bare_proc.pid, self.redis.proc.pid]
        cpu: dict[str, list[float]] = {"ours": [], "bare": []}
        measures = {
            "plain Python (sequential stages)": lambda: self.plain(values),
            "bare canvas, compact body": self.with_cpu(lambda: self.bare(values), bare_pids, cpu["bare"]),
            "ours: submission to result": self.with_cpu(lambda: self.ours_inprocess(values), ours_pids, cpu["ours"]),
            "ours: sweep command (subprocess)": lambda: self.ours_cli(values, sampler=sampler),
        }
        if n <= NAIVE_BARE_UP_TO:
            measures["bare canvas, group body (naive)"] = lambda: self.bare(values, compact=False)
        samples = interleaved(s.reps, measures)
        for sample in samples.values():
            self.show(sample)
        plain = samples["plain Python (sequential stages)"].median
        bare = samples["bare canvas, compact body"].median
        ours = samples["ours: submission to result"].median
        cli = samples["ours: sweep command (subprocess)"].median
        self.judge(f"{label} ours / plain Python", ours / plain, target)
        self.judge(f"{label} sweep command / plain Python", cli / plain, None)
        self.judge(f"{label} bare canvas (compact) / plain Python", bare / plain, None)
        if "bare canvas, group body (naive)" in samples:
            self.judge(f"{label} bare canvas (naive) / plain Python",
                       samples["bare canvas, group body (naive)"].median / plain, None)
        self.judge(f"{label} ours / bare canvas (compact)", ours / bare, None)
        self.judge(f"{label} overhead per task vs plain", (ours - plain) / tasks * 1000, None, "ms")
        self.judge(f"{label} overhead per task vs bare canvas", (ours - bare) / tasks * 1000, None, "ms")
        cpu_ours, cpu_bare = (sorted(v)[len(v) // 2] / tasks * 1000 for v in (cpu["ours"], cpu["bare"]))
        self.judge(f"{label} worker+redis CPU per task, ours", cpu_ours, None, "ms")
        self.judge(f"{label} worker+redis CPU per task, bare canvas", cpu_bare, None, "ms")
        return {"plain": plain, "bare": bare, "ours": ours, "cli": cli, "tasks": tasks}

    def w2_w3(self, workloads: set[str]) -> None:
        s = self.sizes
        found = {}
        if "W2" in workloads:
            found["W2"] = self.fan_out("W2", s.w2_alphas, 1.6)  # issue 23 item 3 (issue 10 had 2.0)
        if "W3" in workloads:
            roots = {"project worker": self.prefork.pid, "bare worker": self.bare_proc.pid,
                     "redis-server": self.redis.proc.pid}
            with RssSampler(roots) as sampler:
                found["W3"] = self.fan_out("W3", s.w3_alphas, 1.6, sampler)  # issue 23 (issue 10: 2.5)
            self.out("  peak RSS (MiB), sampled every 50 ms:")
            for name, mib in sampler.mib().items():
                self.out(f"    {name:<40} {mib:7.1f}")
            ours = [v for k, v in sampler.mib().items() if k.startswith(("project", "CLI"))]
            self.judge("W3 largest process of ours (RSS)", max(ours), 250, "MiB")
        if {"W2", "W3"} <= set(found):
            w2, w3 = found["W2"], found["W3"]
            per2 = (w2["ours"] - w2["plain"]) / w2["tasks"] * 1000
            per3 = (w3["ours"] - w3["plain"]) / w3["tasks"] * 1000
            self.judge("W3/W2 overhead-per-task growth", per3 / per2 if per2 > 0 else float("nan"), None,
                       "x", "(1.0 = linear in alphas) ")

    def w4(self) -> None:
        """Six alphas on a large dataset: I/O against compute, and the distributed wall time."""
        from bench.profile_io import profile_flow, summary

        s = self.sizes
        n = s.w4_samples
        six = alphas(6)
        self.out(f"\n== W4: six alphas, --n-samples {n}  (load {harness.load_average()})")
        timers = [profile_flow(self.root, six, n) for _ in range(s.reps)]
        best = min(timers, key=lambda t: t.seconds["flow"])
        self.out(f"  in-process profile (fastest of {s.reps} flows, {best.seconds['flow']:.3f} s):")
        for line in summary(best):
            self.out(line)
        samples = interleaved(s.reps, {
            "plain Python (sequential stages)": lambda: self.plain(six, n),
            "ours: submission to result": lambda: self.ours_inprocess(six, n),
        })
        for sample in samples.values():
            self.show(sample)
        self.judge("W4 ours / plain Python", samples["ours: submission to result"].median
                   / samples["plain Python (sequential stages)"].median, None)


def run_all(workloads: set[str], sizes: Sizes, out: Callable[[str], None] = print) -> None:
    """Start Redis and the workers, run the chosen workloads in order, stop everything."""
    work = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    bench = None
    try:
        bench = Bench(work, sizes, workloads, out)
        if "W1" in workloads:
            bench.w1()
        if "E" in workloads:
            bench.embedded()
        if workloads & {"W2", "W3"}:
            bench.w2_w3(workloads)
        if "W4" in workloads:
            bench.w4()
        if "W5" in workloads:
            embedded_default.w5(bench, work)
        if "W1E" in workloads:
            embedded_default.w1_embedded(bench, work)
        if "W2E" in workloads:
            embedded_default.w2_embedded(bench, work)
        if "W6" in workloads:
            cache_sweep.w6(bench)
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(work, ignore_errors=True)
