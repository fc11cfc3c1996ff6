"""Submitting a run must not import numpy or scikit-learn (seconds of start-up per command)."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

CHECK = """
import sys
import cli
from pipeline.embedded import connect
from pipeline.cli import report
from pipeline.runs import submit as runs
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'sklearn', 'scipy', 'joblib'))
print(','.join(heavy))
"""


def test_cli_and_submission_path_import_no_numerics():
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"imported on the CLI's path: {result.stdout.strip()}"
