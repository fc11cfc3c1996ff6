"""The benchmark command runs end to end at tiny sizes and prints its ratio lines.

Benchmarks are not tests: this checks only that ``python bench/run.py --quick`` works
(its own Redis and workers, every workload, everything stopped afterwards), not the numbers.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # runs every workload end to end: about 100 s

EXPECTED = [
    "W1 sweep command / critical path",
    "W1 submission-to-result / critical path",
    "E first start adds",
    "W2 ours / plain Python",
    "W2 overhead per task vs plain",
    "W2 ours / bare canvas (compact)",
    "W3 ours / plain Python",
    "W3 largest process of ours (RSS)",
    "W4 ours / plain Python",
]


def test_quick_benchmark_prints_every_ratio():
    result = subprocess.run([sys.executable, "bench/run.py", "--quick"], cwd=ROOT, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ratios = {}
    for line in result.stdout.splitlines():
        match = re.match(r"RATIO (.+?)\s{2,}(-?[\d.]+) (x|ms|s|MiB)", line)
        if match:
            ratios[match[1].strip()] = float(match[2])
    missing = [name for name in EXPECTED if name not in ratios]
    assert not missing, f"missing ratio lines {missing}:\n{result.stdout}"
    assert ratios["W2 ours / plain Python"] > 0 and ratios["W3 largest process of ours (RSS)"] > 0
    assert "file I/O" in result.stdout and "quick sizes, not judged" in result.stdout
