"""cancel's second layer on its own: the revoke broadcast reaches the worker and drops messages.

The ledger alone already makes every message of a cancelled run a no-op (``begin`` answers
``cancelled``), so a test of the run's states passes with or without the revoke. These
tests look at the worker instead (``--log-tasks``): Celery logs ``Tasks flagged as revoked:
<ids>`` when the broadcast arrives (celery/worker/control.py) and ``Discarding revoked task:
<name>[<id>]`` when it drops a revoked message instead of running it (celery/worker/
request.py); a message that is not revoked reaches our task instead, which logs ``not
running <key> of run <id>: cancelled``.
"""
from __future__ import annotations

import re
import time

import pytest

from faultkit import log_lines, make_stack, poll, running
from pipeline.definition import flow

pytestmark = pytest.mark.slow

TWO = ["1.0", "0.1"]


def flagged_revoked(log: str) -> set[str]:
    """Every Celery id the worker was told to revoke."""
    return {task_id for line in re.findall(r"Tasks flagged as revoked: (.*)", log) for task_id in line.split(", ")}


def discarded(log: str, task: str, task_id: str) -> bool:
    return f"Discarding revoked task: pipeline.{task}[{task_id}]" in log


def test_cancel_revokes_retries_waiting_for_their_countdown(tmp_path):
    """Both trains fail and wait 30 s to retry (ETA messages held in the worker's memory) when
    the run is cancelled: the worker is told to revoke them and, at their ETA, discards them
    without running our task at all; no train attempt begins again."""
    stack = make_stack(tmp_path)
    try:
        worker = stack.worker("--pool", "threads", "--concurrency", "2", "--log-tasks")
        ledger = stack.ledger()
        trains = [flow.train_key(i) for i in range(len(TWO))]
        run_id = stack.submit("--alphas", *TWO, "--fail-rate", "1", "--retries", "3", "--retry-delay", "30")
        poll(lambda: all(ledger.task_states(run_id).get(k) == "Retrying" for k in trains),
             "both train_model tasks to wait for their retry", 30)
        ids = {k: ledger.task_ids(run_id)[k] for k in trains}
        # the retries wait in the worker: each ETA message is taken and unacknowledged
        poll(lambda: all(worker.text().count(f"Task pipeline.train_model[{ids[k]}] received") == 2 for k in trains),
             "the worker to hold both retries", 10)

        cancelled = stack.cli("cancel", run_id)
        assert cancelled.returncode == 0, cancelled.stderr
        poll(lambda: set(ids.values()) <= flagged_revoked(worker.text()), "the worker to flag the trains revoked", 10)
        retry_at = float(max(r["ended"] for r in ledger.tasks(run_id, trains))) + 30
        # at their ETA the worker drops them, before our task is called
        poll(lambda: all(discarded(worker.text(), "train_model", ids[k]) for k in trains),
             "the worker to discard both retries", retry_at - time.time() + 15)
        log = worker.text()
        assert "not running train_model" not in log, log  # no retry message reached the task
        for row in ledger.tasks(run_id, trains):
            assert (row["state"], row["attempts"]) == ("Cancelled", 1), row
        lines = log_lines(ledger, run_id)
        assert all(lines.count((k, "train_model begin")) == 1 for k in trains), lines
        poll(lambda: stack.redis.client().hlen("unacked") == 0, "the discarded messages to be acknowledged", 10)
    finally:
        stack.close()


def test_cancel_revokes_chain_links_not_yet_sent(tmp_path):
    """Cancelled while download_dataset sleeps on a threads worker (which cannot terminate it):
    the body ends by itself and the chain sends its next link, preprocess_dataset, under the
    id the run recorded; the worker was told to revoke that id and discards the message."""
    stack = make_stack(tmp_path)
    try:
        worker = stack.worker("--pool", "threads", "--concurrency", "2", "--log-tasks")
        ledger = stack.ledger()
        run_id = stack.submit("--alphas", *TWO, "--sleep", "4")
        poll(lambda: running(ledger, run_id, [flow.DOWNLOAD]), "download_dataset to run")
        preprocess_id = ledger.task_ids(run_id)[flow.PREPROCESS]
        assert f"[{preprocess_id}]" not in worker.text()  # not sent yet: the download has not ended

        cancelled = stack.cli("cancel", run_id)
        assert cancelled.returncode == 0, cancelled.stderr
        poll(lambda: preprocess_id in flagged_revoked(worker.text()), "the worker to flag preprocess revoked", 10)
        poll(lambda: discarded(worker.text(), "preprocess_dataset", preprocess_id),
             "the worker to discard preprocess_dataset once the download ended", 30)
        log = worker.text()
        assert f"Task pipeline.preprocess_dataset[{preprocess_id}] received" in log  # it was sent, then dropped
        assert "not running preprocess_dataset" not in log, log
        row = ledger.tasks(run_id, [flow.PREPROCESS])[0]
        assert (row["state"], row["attempts"]) == ("Cancelled", 0), row
        assert ledger.get_run(run_id)["state"] == "Cancelled"
    finally:
        stack.close()
