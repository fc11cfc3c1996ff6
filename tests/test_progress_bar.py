"""The waiting bar: failures show in it as they happen, an estimate only when there is a
pace to base it on, drawn only on a terminal and never with --json.

The end-to-end tests give the CLI a pseudo-terminal as stderr (a real TTY) and the
session's real worker.
"""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

from conftest import CLI, ROOT, run_cli

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_terminal(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str, str]:
    """Run ``python cli.py ARGS`` with stderr on a pseudo-terminal of 80 columns; return
    (exit code, stdout, stderr without escape sequences)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([sys.executable, CLI, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.stdout.read().decode()
    proc.wait(timeout)
    return proc.returncode, out, ANSI.sub(b"", b"".join(chunks)).decode(errors="replace")


def test_bar_segments_each_state_and_leaves_pending_blank():
    from pipeline.cli.progress import bar_text, segments

    counts = {"Success": 6, "Failed": 2, "TriggerFailed": 4, "Running": 2, "Pending": 10}
    assert bar_text(counts, 24, width=24) == "[======!!////>>          ]"
    assert sum(n for _, _, n in segments(counts, 24, 24)) == 14
    assert bar_text({"Success": 23}, 23, width=10) == "[==========]"
    assert bar_text({}, 0, width=4) == "[    ]"


def test_counts_name_failures_blocked_and_retrying_and_leave_out_zeros():
    from pipeline.cli.progress import counts_text

    counts = {"Success": 9, "Failed": 2, "TriggerFailed": 1, "Retrying": 1, "Pending": 10}
    assert counts_text(counts, 12, 23) == "12/23  9 done, 2 failed, 1 blocked, 1 retrying"
    assert counts_text({"Pending": 3}, 0, 3) == "0/3  0 done"


def test_time_left_only_from_a_pace_seen_while_waiting():
    from pipeline.cli.progress import time_left

    assert time_left(2, 10.0, 20, {}) is None  # too few finished to have a pace
    assert time_left(4, 10.0, 20, {}) == 50.0  # 4 tasks in 10 s, 20 to go
    assert time_left(4, 10.0, 20, {"Retrying": 1}) is None  # a retry's delay is not a pace
    assert time_left(4, 10.0, 0, {}) is None


def test_a_failing_sweep_on_a_terminal_shows_failed_and_blocked_in_the_bar(cli_env):
    code, out, err = run_on_terminal("sweep", "--alphas", "1.0", "0.1", "--fail-rate", "1", env=cli_env)
    assert code == 1, err
    final = [line for line in re.split(r"[\r\n]", err) if "/11  " in line][-1]
    assert final.startswith("[")
    assert "11/11  2 done, 2 failed, 7 blocked" in final, final
    bar = final[: final.index("]") + 1]
    assert bar.count("=") and bar.count("!") and bar.count("/") and "#" not in bar, bar
    assert "2 tasks failed:" in out  # the summary goes to stdout as without a terminal


def test_no_bar_with_json_or_when_stderr_is_not_a_terminal(cli_env):
    code, out, err = run_on_terminal("sweep", "--alphas", "1.0", "--fail-rate", "1", "--json", env=cli_env)
    assert code == 1 and out.lstrip().startswith("{")
    assert "/7  " not in err and "done" not in err, err
    piped = run_cli("sweep", "--alphas", "1.0", "--fail-rate", "1", env=cli_env)
    assert piped.returncode == 1 and "/7  " not in piped.stderr and "done" not in piped.stderr


def test_the_bar_reads_task_states_at_most_every_quarter_second_and_always_at_the_end():
    from pipeline.cli.progress import progress_bar

    class Book:
        reads = 0

        def state_counts(self, run_id):
            Book.reads += 1
            return {"Success": 1}

    with progress_bar(Book(), "r1", enabled=True) as update:
        for finished in range(1, 100):  # 99 changes within far less than 0.25 s
            update(finished, 100)
        reads_while_running = Book.reads
        update(100, 100)
    assert reads_while_running == 1 and Book.reads == 2
