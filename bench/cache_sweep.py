"""W6: the stage cache (issue 22). A 200-alpha sweep uncached, the same with ``--cache`` twice
(the first fills the cache, the second runs no train or evaluate body), then widened to 400
alphas with ``--cache`` (only the 200 new branches compute), against the uncached sweeps of
200 and 400 alphas in the same run; each repetition on a fresh artifacts root (an empty cache).
"""
from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from bench import harness
from bench.harness import Sample, alphas

if TYPE_CHECKING:
    from bench.workloads import Bench


def w6(bench: "Bench") -> None:
    """Print W6's lines: each sweep's median and its ratio to the uncached sweep of its size."""
    n = 8 if bench.sizes.quick else 200
    rows = bench.sizes.w6_samples
    narrow, wide = alphas(n), alphas(2 * n)
    bench.out(f"\n== W6: the stage cache, {n} then {2 * n} alphas, --n-samples {rows}, prefork worker -c 2  "
              f"(load {harness.load_average()})")
    names = ("uncached", "--cache, first (fills)", "--cache, second (all hits)", f"uncached, {2 * n} alphas",
             f"--cache widened to {2 * n} (half hits)")
    samples = {name: Sample(name) for name in names}
    computed = {}

    def count_states(run_id: str) -> None:
        computed[run_id] = bench.conn.ledger.state_counts(run_id)

    for rep in range(bench.sizes.reps):
        root = bench.work / f"w6-{rep}"
        root.mkdir()
        samples[names[0]].values.append(bench.ours_inprocess(narrow, rows, root=root))
        samples[names[3]].values.append(bench.ours_inprocess(wide, rows, root=root))
        for name, values in ((names[1], narrow), (names[2], narrow), (names[4], wide)):
            computed.clear()
            samples[name].values.append(bench.ours_inprocess(values, rows, root=root, cache="on", check=count_states))
            (counts,) = computed.values()
            hits = counts.get("Cached", 0)
            want = {names[1]: 0, names[2]: 2 + 2 * n, names[4]: 2 + 2 * n}[name]
            if hits != want:
                raise RuntimeError(f"W6 {name}: {hits} tasks Cached, expected {want} ({counts})")
        shutil.rmtree(root, ignore_errors=True)
    for sample in samples.values():
        bench.show(sample)
    base, base_wide = samples[names[0]].median, samples[names[3]].median
    bench.judge("W6 --cache first / uncached", samples[names[1]].median / base, None, "x", "(the cost of storing) ")
    bench.judge("W6 --cache second / uncached", samples[names[2]].median / base, None, "x",
                f"({2 + 2 * n} tasks Cached, no train or evaluate body) ")
    bench.judge(f"W6 widened to {2 * n} / uncached {2 * n}", samples[names[4]].median / base_wide, None, "x",
                f"(only {2 * n} of {2 + 4 * n} train/evaluate tasks computed) ")
