"""``sweep`` and ``wait`` stop waiting on a stuck run, say why in one line, and exit 3.

A run is stuck by the rule ``status`` uses (no progress for ``PIPELINE_STUCK_AFTER``
seconds plus the run's own waits); the line says whether any live worker consumes the
run's queue. The run itself is left as it is.
"""
from __future__ import annotations

import json
import time

from conftest import poll, recorded_run, run_cli
from pipeline.worker.liveness import consumers_of
from pipeline.cli.common import EXIT_STUCK

STUCK_AFTER = "1"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_sweep_on_a_label_nobody_serves_exits_stuck_naming_the_queue(cli_env):
    env = dict(cli_env, PIPELINE_STUCK_AFTER=STUCK_AFTER)
    started = time.monotonic()
    result = run_cli("sweep", "--alphas", "1.0", "0.1", "--label", "nobody", env=env, timeout=60)
    assert result.returncode == EXIT_STUCK == 3, result
    (line,) = error_lines(result.stderr)
    assert "is stuck: no live worker consumes its queue 'nobody'" in line, result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 45  # it stops waiting (the bound is only against a hang)
    run_id = line.split("run ", 1)[1].split(" ", 1)[0]
    doc = json.loads(run_cli("status", run_id, "--json", env=env).stdout)
    assert (doc["state"], doc["stuck"]) == ("Pending", True)  # left as it is, flagged as status flags it


def test_wait_on_a_run_that_makes_no_progress_exits_stuck(cli_env, clean_redis):
    """A run recorded as sent whose messages never existed, on the queue the session's worker consumes."""
    run_id = "20260101T000000Z-57acc0"
    book = recorded_run(clean_redis.url, run_id)
    # the point is the reason given while a worker is live: wait for its record (rewritten every 5 s)
    poll(lambda: consumers_of(book, "default"), "the session worker's record of queue 'default'", 20)
    env = dict(cli_env, PIPELINE_STUCK_AFTER=STUCK_AFTER)
    result = run_cli("wait", run_id, env=env, timeout=60)
    assert result.returncode == EXIT_STUCK, result
    (line,) = error_lines(result.stderr)
    assert f"run {run_id} is stuck: no progress for" in line, line
    assert "though a live worker consumes its queue 'default'" in line, line
    assert f"python cli.py restart {run_id}" in line


def test_wait_on_a_progressing_run_is_not_cut_short(cli_env):
    """A run of stages sleeping longer than PIPELINE_STUCK_AFTER is not stuck (its --sleep counts)."""
    env = dict(cli_env, PIPELINE_STUCK_AFTER=STUCK_AFTER)
    result = run_cli("sweep", "--alphas", "1.0", "--sleep", "1.5", "--json", env=env, timeout=90)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "Success"
