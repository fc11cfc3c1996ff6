"""Notifications through real workers to a receiver of the test's own (issue 21).

Each test has its own redis-server (faultkit.make_stack) and worker, so no other
worker's sender (without the secret) takes its deliveries; the receiver is an HTTP server
on 127.0.0.1 (tests/receiver.py) that records what it got.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import time

import pytest

from conftest import free_port, run_cli, start_flower, stop_process
from faultkit import make_stack, poll
from receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"a secret of the test's own, 32 b").decode()
"""A Standard Webhooks secret in its ``whsec_`` form."""


def verify(secret: str, msg_id: str, timestamp: str, body: str, signatures: str) -> bool:
    """The receiver's check, written from the Standard Webhooks spec (not with the project's code)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = "v1," + base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256)
                                        .digest()).decode()
    return expected in signatures.split()


@pytest.fixture
def receiver():
    got = Receiver(free_port()).start()
    yield got
    got.stop()


@pytest.fixture
def stack(tmp_path):
    built = make_stack(tmp_path, PIPELINE_WEBHOOK_SECRET=SECRET, PIPELINE_NOTIFY_INTERVAL="0.2",
                       PIPELINE_NOTIFY_BACKOFF="0.2")
    yield built
    built.close()


def deliveries(stack, run_id: str) -> list[dict]:
    listed = stack.cli("notifications", run_id, "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_a_failing_sweep_sends_exactly_one_signed_run_failed(stack, receiver):
    stack.worker("--pool", "threads", "--concurrency", "4")
    done = stack.cli("sweep", "--alphas", "1.0", "0.1", "--n-samples", "100", "--fail-rate", "1",
                     "--notify", receiver.url, "--json")
    assert done.returncode == 1, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    poll(lambda: receiver.received, "the run.failed webhook", 30)
    time.sleep(2)  # anything sent twice would have arrived by now (the sender looks every 0.2 s)
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert verify(SECRET, got.headers["webhook-id"], got.headers["webhook-timestamp"], got.body,
                  got.headers["webhook-signature"])
    assert not verify(SECRET, got.headers["webhook-id"], got.headers["webhook-timestamp"], got.body + " ",
                      got.headers["webhook-signature"])
    event = got.json()
    status = stack.status(run_id)
    assert event["type"] == "run.failed"
    assert event["data"]["run_id"] == run_id and event["data"]["state"] == "Failed"
    assert event["data"]["failed"] == status["failed"] and status["failed"]
    assert event["data"]["failed"][0]["error"]  # the first line of the error
    assert event["data"]["version"] == status["version"]
    assert event["data"]["duration"] == status["duration"]
    [row] = deliveries(stack, run_id)
    assert (row["event"], row["status"], row["attempts"], row["last_error"]) == ("run.failed", "delivered", 1, None)
    assert row["event_id"] == got.headers["webhook-id"]
    assert stack.cli("notifications").stdout.splitlines()[1].split()[:4] == [run_id, "run.failed", "delivered", "1"]


def test_the_run_page_lists_the_runs_deliveries_with_secrets_redacted(stack, receiver):
    import urllib.request

    stack.worker("--pool", "threads", "--concurrency", "2")
    run_id = failed_run(stack, receiver, "--notify", f"http://u:pw@127.0.0.1:{receiver.port}/h?token=t0ps3cret")
    poll(lambda: len(receiver.received) == 2, "both webhooks", 30)
    proc, base, _env = start_flower(stack.redis.url, stack.tmp / "flower.log", auth=None)
    try:
        with urllib.request.urlopen(f"{base}/runs/{run_id}", timeout=30) as response:
            page = response.read().decode()
    finally:
        stop_process(proc)
    hook = next(r for r in receiver.received if r.path.startswith("/h?"))
    assert hook.headers["authorization"] == "Basic " + base64.b64encode(b"u:pw").decode()
    section = page[page.index('id="notifications"'):page.index('id="logs"')]
    assert section.count("run.failed") == 2 and section.count("delivered") == 2
    assert "token=***" in section and "u:***@" in section
    assert "t0ps3cret" not in page and "pw@" not in page


def test_succeeded_is_sent_only_when_chosen(stack, receiver):
    """PIPELINE_NOTIFY (not --notify) and PIPELINE_NOTIFY_EVENTS choose; the message links the run's
    page under the worker's PIPELINE_PUBLIC_URL; a destination nobody answers never fails a run."""
    stack.worker("--pool", "threads", "--concurrency", "4", env_extra={"PIPELINE_PUBLIC_URL": "https://runs.example/"})
    quiet = stack.cli("sweep", "--alphas", "1.0", "--n-samples", "100", "--notify", receiver.url, "--json")
    assert quiet.returncode == 0, quiet.stderr
    chosen = run_cli("sweep", "--alphas", "1.0", "--n-samples", "100", "--json",
                     env={**stack.env, "PIPELINE_NOTIFY": receiver.url, "PIPELINE_NOTIFY_EVENTS": "succeeded,failed"})
    assert chosen.returncode == 0, chosen.stderr
    run_id = json.loads(chosen.stdout)["run_id"]
    poll(lambda: receiver.received, "the run.succeeded webhook", 30)
    time.sleep(1)
    assert [r.json()["type"] for r in receiver.received] == ["run.succeeded"]
    assert receiver.received[0].json()["data"]["run_id"] == run_id
    assert receiver.received[0].json()["data"]["url"] == f"https://runs.example/runs/{run_id}"
    assert deliveries(stack, json.loads(quiet.stdout)["run_id"]) == []

    nobody = f"http://127.0.0.1:{free_port()}/hook"  # refuses every connection
    unheard = run_cli("sweep", "--alphas", "1.0", "--n-samples", "100", "--notify", nobody, "--json",
                      env={**stack.env, "PIPELINE_NOTIFY_EVENTS": "succeeded"})
    assert unheard.returncode == 0 and json.loads(unheard.stdout)["state"] == "Success", unheard.stderr
    unheard_id = json.loads(unheard.stdout)["run_id"]
    row = poll(lambda: next((r for r in deliveries(stack, unheard_id) if r["last_error"]), None),
               "the failed delivery attempt recorded", 30)
    assert row["status"] == "pending" and stack.status(unheard_id)["state"] == "Success"  # retried, run untouched


@pytest.mark.parametrize("url", ["not a url", "http://", "http://host:99999/x", "bogus://x"])
def test_a_malformed_destination_is_refused_before_anything_is_enqueued(stack, url):
    refused = stack.cli("sweep", "--alphas", "1.0", "--notify", url)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and repr(url) in refused.stderr
    assert stack.redis.client().keys("*") == []


def failed_run(stack, receiver, *args: str) -> str:
    """A sweep with ``--fail-rate 1`` notifying ``receiver``; its run id once it ended."""
    done = stack.cli("sweep", "--alphas", "1.0", "--n-samples", "100", "--fail-rate", "1",
                     "--notify", receiver.url, "--json", *args)
    assert done.returncode == 1, done.stderr
    return json.loads(done.stdout)["run_id"]


def test_500_then_200_sends_the_same_webhook_id_twice_and_ends_delivered(stack, receiver):
    receiver.answers = [(500, None)]
    stack.worker("--pool", "threads", "--concurrency", "2")
    run_id = failed_run(stack, receiver)
    poll(lambda: len(receiver.received) >= 2, "the retry", 30)
    time.sleep(1)
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    [row] = deliveries(stack, run_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 2, "HTTP 500 Internal Server Error")


def test_retry_after_is_honoured_and_other_4xx_are_not_retried(stack, receiver):
    receiver.answers = [(429, "3")]
    stack.worker("--pool", "threads", "--concurrency", "2")
    failed_run(stack, receiver)
    poll(lambda: len(receiver.received) >= 2, "the retry after Retry-After", 30)
    assert receiver.received[1].at - receiver.received[0].at >= 3.0  # the backoff alone is 0.2 s

    receiver.received.clear()
    receiver.answers = [(404, None)]
    run_id = failed_run(stack, receiver)
    poll(lambda: deliveries(stack, run_id)[0]["status"] != "pending", "the 404 to end the delivery", 30)
    time.sleep(1)
    [row] = deliveries(stack, run_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 1, "HTTP 404 Not Found")
    assert len(receiver.received) == 1


@pytest.mark.slow
def test_a_receiver_down_for_20_s_gets_it_once_up_even_across_a_worker_restart(tmp_path):
    port = free_port()
    down = Receiver(port)  # nothing listens on its port yet
    stack = make_stack(tmp_path, PIPELINE_WEBHOOK_SECRET=SECRET, PIPELINE_NOTIFY_INTERVAL="0.2",
                       PIPELINE_NOTIFY_BACKOFF="0.5", PIPELINE_NOTIFY_MAX_BACKOFF="2", PIPELINE_NOTIFY_TIMEOUT="2")
    try:
        first = stack.worker("--pool", "threads", "--concurrency", "2")
        run_id = failed_run(stack, down)
        went_down = time.time()
        poll(lambda: deliveries(stack, run_id)[0]["attempts"] >= 2, "attempts against the closed port", 30)
        [row] = deliveries(stack, run_id)
        assert row["status"] == "pending" and "refused" in row["last_error"].lower()
        stop_process(first.proc, signal.SIGKILL)  # the pending delivery lives in Redis, not in this worker
        stack.worker("--pool", "threads", "--concurrency", "2", name="second")
        time.sleep(max(0.0, went_down + 20 - time.time()))
        down.start()
        # a sender killed between its claim and its record leaves the delivery to the lease (36 s here)
        poll(lambda: down.received, "the delivery once the receiver is up", 60)
        time.sleep(1)
        assert len(down.received) == 1
        assert verify(SECRET, down.received[0].headers["webhook-id"], down.received[0].headers["webhook-timestamp"],
                      down.received[0].body, down.received[0].headers["webhook-signature"])
        [row] = deliveries(stack, run_id)
        assert row["status"] == "delivered" and row["attempts"] >= 3
    finally:
        down.stop()
        stack.close()


def test_a_stuck_run_is_told_once_per_episode_and_its_cancel_too(tmp_path, receiver):
    """Nobody consumes the run's label: the workers' stuck check tells it once, however long it stays stuck."""
    stack = make_stack(tmp_path, PIPELINE_WEBHOOK_SECRET=SECRET, PIPELINE_NOTIFY_INTERVAL="0.2",
                       PIPELINE_STUCK_AFTER="2")
    try:
        stack.worker("--pool", "threads", "--concurrency", "2")
        sent = run_cli("sweep", "--alphas", "1.0", "--label", "nobody", "--notify", receiver.url, "--no-wait",
                       env={**stack.env, "PIPELINE_NOTIFY_EVENTS": "stuck,cancelled"})
        assert sent.returncode == 0, sent.stderr
        run_id = sent.stdout.strip()
        poll(lambda: receiver.received, "run.stuck", 30)
        time.sleep(4)  # two more stuck thresholds, eight more checks: still one
        assert [r.json()["type"] for r in receiver.received] == ["run.stuck"]
        stuck = receiver.received[0].json()["data"]
        assert stuck["run_id"] == run_id and stuck["state"] == "Pending"
        assert "no live worker consumes its queue 'nobody'" in stuck["reason"]

        assert stack.cli("cancel", run_id).returncode == 0
        poll(lambda: len(receiver.received) == 2, "run.cancelled", 30)
        assert receiver.received[1].json()["type"] == "run.cancelled"
        assert receiver.received[1].json()["data"]["state"] == "Cancelled"
        assert receiver.received[0].headers["webhook-id"] != receiver.received[1].headers["webhook-id"]
        assert [(d["event"], d["status"]) for d in deliveries(stack, run_id)] == [
            ("run.stuck", "delivered"), ("run.cancelled", "delivered")]
    finally:
        stack.close()


@pytest.mark.slow
def test_a_worker_sigkilled_mid_run_still_produces_run_recovered(tmp_path, receiver):
    """The reclaim path (tests/test_reclaim.py): the dead worker's task starts again on the
    survivor, whose BEGIN sees an attempt that never ended and queues run.recovered; the
    survivor's sender delivers it. The victim sent nothing: it was dead."""
    from pipeline.definition import flow
    from test_reclaim import kill_while_running

    stack = make_stack(tmp_path, PIPELINE_WEBHOOK_SECRET=SECRET, PIPELINE_NOTIFY_INTERVAL="0.2")
    try:
        victim = stack.worker("--pool", "prefork", "--concurrency", "2", name="victim")
        stack.worker("--pool", "prefork", "--concurrency", "2", name="survivor")
        run_id = stack.submit("--alphas", "1.0", "0.1", "0.01", "0.001", "--sleep", "2", "--notify", receiver.url)
        kill_while_running(stack, run_id, victim, flow.TRAIN)
        poll(lambda: receiver.received, "run.recovered", 90)
        waited = stack.cli("wait", run_id, "--json", timeout=300)
        assert waited.returncode == 0, waited.stderr
        time.sleep(1)
        assert [r.json()["type"] for r in receiver.received] == ["run.recovered"]  # succeeded is not chosen
        got = receiver.received[0]
        assert verify(SECRET, got.headers["webhook-id"], got.headers["webhook-timestamp"], got.body,
                      got.headers["webhook-signature"])
        assert got.json()["data"]["run_id"] == run_id
    finally:
        stack.close()


def test_restart_sends_run_recovered_then_the_new_end(stack, receiver):
    stack.worker("--pool", "threads", "--concurrency", "2")
    run_id = failed_run(stack, receiver)
    poll(lambda: receiver.received, "run.failed", 30)
    again = stack.cli("restart", run_id, "--json")
    assert again.returncode == 1, again.stderr  # fails again: --fail-rate 1 is kept
    poll(lambda: len(receiver.received) == 3, "run.recovered and the second run.failed", 30)
    time.sleep(1)
    assert [r.json()["type"] for r in receiver.received] == ["run.failed", "run.recovered", "run.failed"]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 3


def test_an_apprise_json_url_to_the_local_receiver_works(stack, receiver):
    receiver.answers = [(503, None)]  # Apprise's failure is retried like a webhook's
    stack.worker("--pool", "threads", "--concurrency", "2")
    done = stack.cli("sweep", "--alphas", "1.0", "--n-samples", "100", "--fail-rate", "1", "--json",
                     "--notify", f"json://127.0.0.1:{receiver.port}/hook")
    assert done.returncode == 1, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    poll(lambda: len(receiver.received) >= 2, "Apprise's retry", 30)
    time.sleep(1)
    first, second = [r.json() for r in receiver.received]
    assert "webhook-id" not in receiver.received[1].headers  # Apprise's own JSON, not our webhook
    assert first == second and second["title"] == f"run {run_id} failed"
    status = stack.status(run_id)
    assert f"failed: {status['failed'][0]['key']}" in second["message"]
    [row] = deliveries(stack, run_id)
    assert (row["status"], row["attempts"]) == ("delivered", 2) and row["destination"].startswith("json://")
