"""Temp files of a writer killed mid-write are removed by the run's cleanup, and only that run's."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import ROOT
from pipeline.artifacts.rundir import RunDir
from pipeline.artifacts.store import TMP_DIR_NAME


def test_discard_temp_removes_only_the_runs_own_leftovers(tmp_path):
    run, other = RunDir(tmp_path, "abc").ensure(), RunDir(tmp_path, "abcd").ensure()
    tmp = tmp_path / TMP_DIR_NAME
    mine = [tmp / "pipeline-abc.x1.csv", tmp / "pipeline-abc.x2.joblib"]
    theirs = [tmp / "pipeline-abcd.x3.csv", tmp / "unrelated.csv"]
    for path in mine + theirs:
        path.write_text("half")
    assert run.discard_temp() == 2
    assert sorted(p.name for p in tmp.iterdir()) == sorted(p.name for p in theirs)
    assert run.discard_temp() == 0
    assert other.discard_temp() == 1


def test_writer_killed_inside_atomic_leaves_a_temp_file_that_discard_removes(tmp_path):
    code = (
        "import sys, time\n"
        "from pipeline.artifacts.rundir import RunDir\n"
        f"with RunDir({str(tmp_path)!r}, 'r1').atomic('dataset.csv') as tmp:\n"
        "    tmp.write(b'1,2\\n3,'); tmp.flush()\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = RunDir(tmp_path, "r1")
    leftovers = list((tmp_path / TMP_DIR_NAME).iterdir())
    assert len(leftovers) == 1 and leftovers[0].read_text() == "1,2\n3,"  # partial, but never in the run dir
    assert run.listing() == []
    assert run.discard_temp() == 1 and not list((tmp_path / TMP_DIR_NAME).iterdir())
