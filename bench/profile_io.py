"""W4's profiler harness: where a stage's time goes, file I/O against compute.

Runs the flow in this process (:func:`pipeline.runs.local.run_local`) with the stages'
library calls wrapped by timers: ``np.loadtxt``/``np.savetxt``/``joblib.dump``/
``joblib.load``/``os.fsync`` (file I/O) and ``fit``/``score``/``train_test_split``
(compute). Whatever else a stage spends (data generation, atomic-rename bookkeeping,
printing) is reported as "other". Everything is restored afterwards.
"""
from __future__ import annotations

import os
import secrets
import shutil
import time
from collections import defaultdict
from contextlib import ExitStack, contextmanager, redirect_stderr
from pathlib import Path
from typing import Any, Callable, Iterator

from sklearn.base import RegressorMixin
from sklearn.linear_model import LinearRegression, Ridge

from pipeline.definition import stages

from pipeline.artifacts import store
from pipeline.runs.local import run_local
from pipeline.runs.submit import RunRequest

IO = ("loadtxt", "savetxt", "joblib.dump", "joblib.load", "fsync")
COMPUTE = ("fit", "score", "train_test_split")
STAGE_FUNCS = ("download_dataset", "preprocess_dataset", "train_model", "evaluate_model", "cleanup_file")


class Timers:
    """Accumulated seconds per label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, label: str, fn: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t0
                self.calls[label] += 1

        return timed


class _Proxy:
    """A module stand-in: some attributes replaced, the rest delegated."""

    def __init__(self, module: Any, **overrides: Any) -> None:
        self._module, self._overrides = module, overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._module, name)


@contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def profile_flow(root: Path, alphas: list[float], n_samples: int) -> Timers:
    """Run the flow once with timers in place; return them (stage totals included)."""
    t = Timers()
    np_proxy = _Proxy(stages.np, loadtxt=t.wrap("loadtxt", stages.np.loadtxt),
                      savetxt=t.wrap("savetxt", stages.np.savetxt))
    os_proxy = _Proxy(store.os, fsync=t.wrap("fsync", os.fsync))
    run_id = f"profile-{secrets.token_hex(4)}"
    with ExitStack() as stack:
        stack.enter_context(_patched(stages, "np", np_proxy))
        stack.enter_context(_patched(store, "os", os_proxy))
        stack.enter_context(_patched(stages, "dump", t.wrap("joblib.dump", stages.dump)))
        stack.enter_context(_patched(stages, "load", t.wrap("joblib.load", stages.load)))
        stack.enter_context(_patched(stages, "train_test_split", t.wrap("train_test_split", stages.train_test_split)))
        for cls in (Ridge, LinearRegression):
            stack.enter_context(_patched(cls, "fit", t.wrap("fit", cls.fit)))
        stack.enter_context(_patched(RegressorMixin, "score", t.wrap("score", RegressorMixin.score)))
        for name in STAGE_FUNCS:
            stack.enter_context(_patched(stages, name, t.wrap(f"stage {name}", getattr(stages, name))))
        request = RunRequest(alphas=list(alphas), artifacts_root=root, n_samples=n_samples)
        with open(os.devnull, "w") as devnull, redirect_stderr(devnull):
            t0 = time.perf_counter()
            run_local(request, run_id)
            t.seconds["flow"] = time.perf_counter() - t0
    shutil.rmtree(root / run_id, ignore_errors=True)
    return t


def summary(t: Timers) -> list[str]:
    """Lines: each timer, then I/O vs compute vs other as shares of the stages' time."""
    stage_total = sum(t.seconds[f"stage {n}"] for n in STAGE_FUNCS)
    io = sum(t.seconds[k] for k in IO)
    compute = sum(t.seconds[k] for k in COMPUTE)
    lines = [f"  {label:<28} {t.seconds[label] * 1000:9.1f} ms  ({t.calls[label]} calls)"
             for label in (*IO, *COMPUTE, *(f"stage {n}" for n in STAGE_FUNCS))]
    for label, value in (("file I/O", io), ("compute", compute), ("other", stage_total - io - compute)):
        lines.append(f"  {label:<28} {value * 1000:9.1f} ms  = {value / stage_total * 100:5.1f} % of stage time")
    return lines
