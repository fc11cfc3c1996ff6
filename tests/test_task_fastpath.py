"""One round trip to start a task, buffered log lines, the fan-out: same record as before."""
from __future__ import annotations

import json
import time

from conftest import flush_keeping_workers, run_cli
from pipeline.definition import flow
from pipeline.worker import taskstart
from pipeline.ledger.records import Ledger
from pipeline.redis_conn import make_client


def new_run(book: Ledger, run_id: str, alphas: list[float]) -> None:
    fields = {"id": run_id, "params": {"alphas": alphas, "sleep": 0}, "artifacts": "/tmp/a", "state": "Pending"}
    assert book.create_run(run_id, fields, flow.task_keys(len(alphas)))


def test_begin_read_begins_and_reads_in_one_call(clean_redis):
    book = Ledger(make_client(clean_redis.url), 3600)
    new_run(book, "r1", [1.0, 0.5])
    book.begin_task("r1", flow.DOWNLOAD)
    book.finish_task("r1", flow.DOWNLOAD, "Success", output="dataset.csv")
    got = book.begin_read("r1", flow.PREPROCESS, [flow.PREPROCESS, flow.DOWNLOAD])
    assert (got.begin.verdict, got.begin.attempts) == ("run", 1)
    assert got.params["alphas"] == [1.0, 0.5] and got.artifacts == "/tmp/a"
    assert got.outputs == {flow.DOWNLOAD: "dataset.csv"}
    assert book.task_states("r1")[flow.PREPROCESS] == "Running"
    again = book.begin_read("r1", flow.DOWNLOAD, [flow.DOWNLOAD], got.created)
    assert again.begin.verdict == "success" and again.params is None
    assert again.outputs == {flow.DOWNLOAD: "dataset.csv"}
    assert book.begin_read("nope", flow.DOWNLOAD).begin.verdict == "missing"


def test_start_task_never_serves_parameters_of_an_earlier_run_with_the_same_id(clean_redis):
    book = Ledger(make_client(clean_redis.url), 3600)
    new_run(book, "tick-1", [1.0])
    book.begin_task("tick-1", flow.DOWNLOAD)
    book.finish_task("tick-1", flow.DOWNLOAD, "Success", output="d.csv")
    first = taskstart.start_task(book, "tick-1", flow.PREPROCESS)
    assert first.params["alphas"] == [1.0] and first.inputs == {flow.DOWNLOAD: "d.csv"}
    flush_keeping_workers(clean_redis.client())  # pruned, then the same tick recorded again
    time.sleep(0.01)
    new_run(book, "tick-1", [1.0, 2.0, 3.0])
    for key, out in ((flow.DOWNLOAD, "d2.csv"), (flow.PREPROCESS, ["tr.csv", "te.csv"]),
                     (flow.train_key(2), "m.joblib")):
        book.begin_task("tick-1", key)
        book.finish_task("tick-1", key, "Success", output=out)
    second = taskstart.start_task(book, "tick-1", flow.evaluate_key(2))
    assert second.begin.verdict == "run" and second.params["alphas"] == [1.0, 2.0, 3.0]
    assert second.inputs == {flow.train_key(2): "m.joblib", flow.PREPROCESS: ["tr.csv", "te.csv"]}
    third = taskstart.start_task(book, "tick-1", flow.cleanup_key(3))  # cached now: one round trip
    assert third.params is second.params and third.inputs == {flow.train_key(2): "m.joblib"}


def test_sweep_logs_every_line_of_every_task(cli_env, clean_redis):
    result = run_cli("sweep", "--alphas", "1.0", "0.1", "0.01", "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    book = Ledger(make_client(clean_redis.url), 3600)
    by_task: dict[str, list[str]] = {}
    for _, fields in book.read_logs(run_id):
        by_task.setdefault(fields["task"], []).append(fields["line"])
    assert set(by_task) == set(flow.task_keys(3))
    for key, lines in by_task.items():
        stage = key.split("[")[0]
        assert lines == [f"{stage} begin", f"{stage} end"], (key, lines)
