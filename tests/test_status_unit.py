"""The stuck rule, durations, the timeline and log capture, without a broker."""
from __future__ import annotations

import sys
import threading
import time

from pipeline.worker import logcapture
from pipeline.ledger.status import duration, format_seconds, is_stuck, status_document, stuck_threshold
from pipeline.cli.views import status_text, timeline

NOW = 1_800_000_000.0


def record(state: str, updated_ago: float, **params) -> dict:
    return {"id": "r1", "state": state, "created": repr(NOW - 1000), "updated": repr(NOW - updated_ago),
            "params": {"sleep": 0.0, "retry_delay": 0.0, **params}}


def test_stuck_only_when_active_and_silent_for_longer_than_the_threshold():
    assert is_stuck(record("Running", 301), 300, NOW)
    assert is_stuck(record("Pending", 301), 300, NOW)
    assert not is_stuck(record("Running", 299), 300, NOW)
    for state in ("Success", "Failed", "Cancelled"):
        assert not is_stuck(record(state, 10_000), 300, NOW)


def test_stuck_threshold_includes_the_runs_own_sleep_and_retry_delay():
    run = record("Running", 400, sleep=60, retry_delay=50)
    assert stuck_threshold(run, 300) == 410
    assert not is_stuck(run, 300, NOW)
    assert is_stuck(record("Running", 411, sleep=60, retry_delay=50), 300, NOW)


def test_durations_and_their_text():
    assert duration(repr(NOW), repr(NOW + 2.5)) == 2.5
    assert duration(repr(NOW), None, now=NOW + 4) == 4
    assert duration(None, repr(NOW)) is None
    assert [format_seconds(s) for s in (None, 0.5, 12.34, 125, 7500)] == ["-", "0.50s", "12.3s", "2m05s", "2h05m"]


def task_row(key: str, state: str, start: float | None, end: float | None, attempts: int = 1) -> dict:
    return {"key": key, "state": state, "attempts": attempts, "started": start, "ended": end,
            "output": None, "error": None}


def test_timeline_bars_are_positioned_by_start_and_end():
    run = {"id": "r1", "flow": "f", "version": "1", "state": "Running", "created": repr(NOW), "started": repr(NOW),
           "updated": repr(NOW + 10), "params": {"alphas": [1.0]}, "artifacts": "/a"}
    rows = [task_row("download_dataset", "Success", NOW, NOW + 5),
            task_row("train_model[0]", "Running", NOW + 5, None),
            task_row("evaluate_model[0]", "Pending", None, None, attempts=0)]
    doc = status_document(run, rows, 300, now=NOW + 10)
    assert [t["duration"] for t in doc["tasks"]] == [5.0, 5.0, None]
    bars = timeline(doc["tasks"], NOW, NOW + 10, 20)
    assert bars[0] == "download_dataset  |" + "=" * 10 + " " * 10 + "|"
    assert bars[1] == "train_model[0]    |" + " " * 10 + ">" * 10 + "|"
    assert bars[2] == "evaluate_model[0] |" + " " * 20 + "|"
    text = status_text(doc, NOW + 10, columns=80)
    assert "train_model[0]     1.0    Running  1" in text
    assert timeline(doc["tasks"], NOW, NOW + 10, 60)[1] in text


def test_earlier_attempts_share_the_task_row():
    run = {"id": "r1", "flow": "f", "version": "1", "state": "Success", "created": repr(NOW), "started": repr(NOW),
           "ended": repr(NOW + 10), "updated": repr(NOW + 10), "params": {"alphas": [1.0]}, "artifacts": "/a"}
    row = task_row("train_model[0]", "Success", NOW + 6, NOW + 10, attempts=3)
    row["history"] = [{"attempt": 1, "state": "Failed", "started": NOW, "ended": NOW + 2, "error": "boom"},
                      {"attempt": 2, "state": "Unfinished", "started": NOW + 3, "ended": None, "error": None}]
    doc = status_document(run, [row], 300, now=NOW + 10)
    earlier = doc["tasks"][0]["earlier_attempts"]
    assert [(a["attempt"], a["state"], a["duration"], a["error"]) for a in earlier] == [
        (1, "Failed", 2.0, "boom"), (2, "Unfinished", None, None)]
    assert earlier[0]["started"].endswith("Z") and earlier[1]["ended"] is None
    (bar,) = timeline(doc["tasks"], NOW, NOW + 10, 20)
    assert bar == "train_model[0] |" + "!" * 4 + " " * 2 + "?" * 6 + "=" * 8 + "|"


def test_a_very_short_task_still_gets_one_column():
    bars = timeline([{"key": "k", "state": "Failed", "started": "2027-01-15T08:00:00.000Z",
                      "ended": "2027-01-15T08:00:00.001Z"}], NOW, NOW + 100_000_000, 30)
    assert bars[0].count("!") == 1


def test_capture_attributes_lines_per_thread_when_many_print_at_once(capsys):
    stored: dict[str, list[str]] = {}
    barrier = threading.Barrier(16)

    def task(name: str) -> None:
        lines = stored.setdefault(name, [])
        with logcapture.capture_lines(lambda line, ts: lines.append(line)):
            barrier.wait()
            for i in range(50):
                print(f"{name} line {i}")
                sys.stdout.write(f"{name} part")
                time.sleep(0)
                sys.stdout.write(f" two {i}\n")
            print()
            print(f"{name} end", end="")

    threads = [threading.Thread(target=task, args=(f"t{n}",)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, lines in stored.items():
        expected = [x for i in range(50) for x in (f"{name} line {i}", f"{name} part two {i}")] + [f"{name} end"]
        assert lines == expected
    print("outside any task")
    assert "outside any task" in capsys.readouterr().out


def test_status_shows_where_the_runs_files_are_on_either_store(tmp_path):
    """An object-store root stays a URL (not ``s3:/...``); a local root a path."""
    rows: list = []
    on_s3 = {**record("Success", 10), "artifacts": "s3://bucket/prefix"}
    assert status_document(on_s3, rows, 300, now=NOW)["artifacts"] == "s3://bucket/prefix/r1"
    local = {**record("Success", 10), "artifacts": str(tmp_path)}
    assert status_document(local, rows, 300, now=NOW)["artifacts"] == str(tmp_path / "r1")
    assert status_document(record("Success", 10), rows, 300, now=NOW)["artifacts"] is None
