"""RabbitMQ as broker (issue 18 item 3): ``CELERY_BROKER_URL=amqp://...`` with the run record in
the Redis result backend, through real ``python cli.py`` workers, CLI, beat and Flower.

Marked slow (the full suite runs them, ``-m "not slow"`` leaves them out): the killed-worker
tests, and cancel/restart, labels through Flower, beat and backfill (about 45 s together);
the one-line refusals, the sweep and the node's consumer_timeout stay in the fast part.

The module boots its own RabbitMQ node (tests/rabbitkit.py: free ports, data in tmp, never
the machine's 5672) and its own redis-server. Messages travel through RabbitMQ only: the
Redis holds the run record and no queue.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import CLI, ROOT, poll, run_cli, start_flower, start_redis, stop_process
from faultkit import Stack, assert_completed_once, kill_group, running
from pipeline.brokers import amqp_queue_counts
from pipeline.definition import flow
from rabbitkit import start_rabbitmq
from test_stages import tutorial_score

SIX = ["1.0", "0.1", "0.01", "0.001", "0.0001", "1e-05"]


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    """This module's RabbitMQ node."""
    server = start_rabbitmq(tmp_path_factory.mktemp("rabbitmq"))
    yield server
    server.stop()


def amqp_stack(rabbit, tmp: Path) -> Stack:
    """A fresh redis-server (the run record) beside ``rabbit`` (the broker), and their environment."""
    from conftest import pipeline_env

    server = start_redis(tmp / "redis")
    env = pipeline_env(rabbit.url, CELERY_RESULT_BACKEND=server.url, PIPELINE_ARTIFACTS=str(tmp / "artifacts"))
    return Stack(server, tmp, env)


@pytest.fixture(scope="module")
def stack(rabbit, tmp_path_factory):
    """Redis, RabbitMQ and one threads worker (10 slots, default queue) for the module."""
    built = amqp_stack(rabbit, tmp_path_factory.mktemp("amqp"))
    built.worker("--pool", "threads", "--concurrency", "10", name="module")
    yield built
    built.close()


def test_a_broker_we_cannot_serve_gets_one_line_and_exit_2(tmp_path):
    """Refused before anything is sent or started, for every command that needs the broker."""
    from conftest import pipeline_env

    cases = [
        (pipeline_env("sqs://queue.example/1"), "CELERY_BROKER_URL=sqs://queue.example/1 is not a broker we serve"),
        (pipeline_env("amqp://guest:guest@127.0.0.1:1//"), "CELERY_RESULT_BACKEND is unset"),
        (pipeline_env("amqp://guest:guest@127.0.0.1:1//", CELERY_RESULT_BACKEND="rpc://"),
         "CELERY_RESULT_BACKEND=rpc:// is not Redis"),
    ]
    commands = [("sweep", "--alphas", "1.0"), ("worker",), ("beat",), ("runs",)]
    for env, message in cases:
        env["PIPELINE_STATE_DIR"] = str(tmp_path / "state")
        for command in commands:
            result = run_cli(*command, env=env, timeout=60)
            assert result.returncode == 2, (command, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
            assert message in result.stderr, (command, result.stderr)
        celery = subprocess.run([sys.executable, "-m", "celery", "-A", "pipeline", "worker"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert celery.returncode == 2 and message in celery.stderr, celery.stderr
    assert not (tmp_path / "state").exists(), "no embedded stack was started"


def test_unreachable_rabbitmq_is_one_line(tmp_path):
    from conftest import pipeline_env, free_port

    env = pipeline_env(f"amqp://guest:secret@127.0.0.1:{free_port()}//", CELERY_RESULT_BACKEND="redis://127.0.0.1:1/0")
    result = run_cli("sweep", "--alphas", "1.0", env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot reach the broker at amqp://guest:***@127.0.0.1:")
    assert "secret" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_sweep_through_rabbitmq(stack, rabbit):
    """The front door: values right, each task once, and the messages went through RabbitMQ."""
    alphas = ["1.0", "0.1", "0.01"]
    sent = stack.cli("sweep", "--alphas", *alphas, "--json", timeout=180)
    assert sent.returncode == 0, (sent.stderr, stack.workers[0].text()[-3000:])
    run_id = json.loads(sent.stdout)["run_id"]
    assert_completed_once(stack, run_id, alphas, {})
    linear = stack.cli("run", "--json", timeout=180)  # `run` too: the linear model, one branch
    assert linear.returncode == 0, linear.stderr
    assert json.loads(linear.stdout)["results"] == {"linear": tutorial_score(17, 100, None)}
    assert amqp_queue_counts(rabbit.url, ["default"]) == {"default": (0, 1)}  # our worker consumes it there
    assert not stack.redis.client().exists("default"), "no queue in the run record's Redis"


@pytest.mark.slow
def test_cancel_then_restart_through_rabbitmq(stack):
    """cancel revokes through RabbitMQ's broadcast; restart sends the rest again."""
    ledger = stack.ledger()
    run_id = stack.submit("--alphas", "1.0", "0.1", "--sleep", "2")
    poll(lambda: ledger.task_states(run_id).get(flow.train_key(0)) == "Running", "train_model[0] to run", 120)
    cancelled = stack.cli("cancel", run_id)
    assert cancelled.returncode == 0 and f"run {run_id} cancelled" in cancelled.stdout, cancelled.stderr
    waited = stack.cli("wait", run_id, "--json", timeout=120)
    assert waited.returncode == 1 and json.loads(waited.stdout)["state"] == "Cancelled", waited.stderr
    states = ledger.task_states(run_id)
    assert states[flow.evaluate_key(0)] == states[flow.cleanup_key(0)] == "Cancelled", states

    restarted = stack.cli("restart", run_id, "--json", timeout=180)
    assert restarted.returncode == 0, restarted.stderr
    run = ledger.get_run(run_id)
    assert run["state"] == "Success", run
    scores = ledger.outputs(run_id, [flow.evaluate_key(0), flow.evaluate_key(1)])
    assert [scores[flow.evaluate_key(i)]["score"] for i in (0, 1)] == [tutorial_score(17, 100, a) for a in (1.0, 0.1)]


@pytest.mark.slow
def test_labels_warning_and_waiting_messages_on_rabbitmq(stack, rabbit):
    """A run on a label nobody consumes: the CLI warns, RabbitMQ holds its first message, and
    Flower's /api/labels counts it (passive queue.declare) and warns too."""
    sent = stack.cli("sweep", "--alphas", "1.0", "--label", "nobody", "--no-wait", "--json")
    assert sent.returncode == 0, sent.stderr
    assert "no live worker consumes queue 'nobody'" in sent.stderr
    run_id = json.loads(sent.stdout)["run_id"]
    assert poll(lambda: amqp_queue_counts(rabbit.url, ["nobody"])["nobody"] == (1, 0), "the message to wait", 30)

    env = {k: v for k, v in stack.env.items() if k != "CELERY_BROKER_URL"}
    proc, base, _env = start_flower(rabbit.url, stack.tmp / "flower.log", CELERY_RESULT_BACKEND=env["CELERY_RESULT_BACKEND"])
    try:
        request = urllib.request.Request(f"{base}/api/labels")
        request.add_header("Authorization", "Basic b3BzOnMzY3JldA==")  # ops:s3cret (FLOWER_AUTH)
        with urllib.request.urlopen(request, timeout=30) as response:
            labels = {entry["queue"]: entry for entry in json.load(response)}
    finally:
        stop_process(proc)
    assert labels["nobody"]["waiting_messages"] == 1 and labels["nobody"]["active_runs"] == [run_id]
    assert "no live worker consumes it" in labels["nobody"]["warning"]
    assert labels["default"]["workers"] and labels["default"]["warning"] is None
    assert stack.cli("cancel", run_id).returncode == 0


@pytest.mark.slow
def test_backfill_and_beat_through_rabbitmq(stack):
    """backfill creates a tick's run, beat (every 2 s) creates more; the worker runs them all."""
    ledger = stack.ledger()
    minute = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    filled = stack.cli("backfill", "--start", minute, "--end", minute, "--alphas", "1.0", "--json")
    assert filled.returncode == 0, filled.stderr
    [run_id] = json.loads(filled.stdout)["created_runs"]
    assert stack.cli("wait", run_id, timeout=180).returncode == 0

    env = {**stack.env, "PIPELINE_BEAT_INTERVAL": "2", "PIPELINE_STATE_DIR": str(stack.tmp / "beat")}
    beat = subprocess.Popen([sys.executable, CLI, "beat"], cwd=ROOT, env=env, stdout=open(stack.tmp / "beat.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ticks = poll(lambda: [r["id"] for r in ledger.list_runs() if r["id"].startswith("tick-") and r["id"] != run_id],
                     "beat's first run", 90)
    finally:
        stop_process(beat)
    waited = stack.cli("wait", ticks[0], timeout=300)
    assert waited.returncode == 0, (waited.stderr, (stack.tmp / "beat.log").read_text()[-2000:])


def held_by(worker, ids: dict[str, str]) -> set[str]:
    """Task keys whose messages ``worker`` received and has not finished (its --log-tasks lines)."""
    text = worker.text()
    held = set()
    for task_id, key in ids.items():
        if f"[{task_id}] received" in text and f"[{task_id}] succeeded" not in text:
            held.add(key)
    return held


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_killed_worker_tasks_are_redelivered_at_once(rabbit, tmp_path, pool):
    """The issue's scenario on RabbitMQ, default settings: six alphas, --sleep 2, a second worker
    running; the victim's whole process group SIGKILLed while it runs train tasks. RabbitMQ
    sees the connection close and redelivers its unacknowledged messages (acks_late)."""
    stack = amqp_stack(rabbit, tmp_path)
    label = f"kill-{pool}"
    try:
        victim = stack.worker("--label", label, "--pool", pool, "--concurrency", "2", "--log-tasks", name="victim")
        survivor = stack.worker("--label", label, "--pool", pool, "--concurrency", "2", "--log-tasks", name="survivor")
        ledger = stack.ledger()
        run_id = stack.submit("--alphas", *SIX, "--sleep", "2", "--label", label)

        def victim_runs_trains() -> set[str]:
            ids = {tid: key for key, tid in ledger.task_ids(run_id).items()}
            held = held_by(victim, ids)
            ok = held and all(k.startswith(flow.TRAIN) for k in held) and running(ledger, run_id, sorted(held))
            return held if ok else set()

        killed = poll(victim_runs_trains, "the victim to run train tasks", 120, interval=0.05)
        kill_group(victim)
        killed_at = time.time()
        waited = stack.cli("wait", run_id, "--json", timeout=300)
        ended = time.time()
        assert waited.returncode == 0, (waited.stderr, survivor.text()[-3000:])
        restarted = min(r["started"] for r in ledger.tasks(run_id, sorted(killed)))
        assert_completed_once(stack, run_id, SIX, {k: 2 for k in killed})
        print(f"\n[rabbitmq {pool}] killed holding {sorted(killed)}: restarted {restarted - killed_at:.1f} s "
              f"after the kill, run ended {ended - killed_at:.1f} s after it")
        assert restarted - killed_at < 30, f"the killed tasks began again {restarted - killed_at:.1f} s after the kill"
    finally:
        stack.close()


def test_the_node_runs_with_the_compose_variants_consumer_timeout(rabbit):
    """docker-compose.rabbitmq.yml's Erlang arguments, given to a real node, raise consumer_timeout
    to PIPELINE_VISIBILITY_TIMEOUT (the longest a stage or retry delay may hold a message)."""
    from pipeline.settings import DEFAULTS

    shown = rabbit.ctl("eval", "application:get_env(rabbit, consumer_timeout).")
    assert shown.strip() == f"{{ok,{int(DEFAULTS.visibility_timeout * 1000)}}}", shown


@pytest.mark.slow
def test_retry_waiting_for_its_countdown_in_a_killed_worker_runs_on_a_live_one(rabbit, tmp_path):
    """A retry's ETA message is held unacknowledged in the worker until its countdown ends: killed
    with the worker, RabbitMQ redelivers it and the live worker runs the retry when it is due.
    (Every train attempt fails by --fail-rate 1: the retry is seen to run, and fail, on the
    live worker; restart --fail-rate 0 then completes the run.)"""
    stack = amqp_stack(rabbit, tmp_path)
    label = "kill-retry"
    try:
        victim = stack.worker("--label", label, "--pool", "prefork", "--concurrency", "2", name="victim")
        ledger = stack.ledger()
        run_id = stack.submit("--alphas", "1.0", "0.1", "--fail-rate", "1", "--retries", "1", "--retry-delay", "30",
                              "--label", label)
        trains = [flow.train_key(0), flow.train_key(1)]
        poll(lambda: all(ledger.task_states(run_id).get(k) == "Retrying" for k in trains), "both trains to retry", 120)
        survivor = stack.worker("--label", label, "--pool", "prefork", "--concurrency", "2", name="survivor")
        assert all(ledger.task_states(run_id).get(k) == "Retrying" for k in trains), "the countdown ended too soon"
        kill_group(victim)
        killed_at = time.time()

        waited = stack.cli("wait", run_id, "--json", timeout=300)
        assert waited.returncode == 1 and json.loads(waited.stdout)["state"] == "Failed", (waited, survivor.text())
        for row in ledger.tasks(run_id, trains):
            assert (row["state"], row["attempts"]) == ("Failed", 2) and "injected failure" in row["error"], row
            assert row["started"] > killed_at, row  # the retry ran after the kill: on the survivor
        first = min(r["started"] for r in ledger.tasks(run_id, trains))
        print(f"\n[rabbitmq, retry countdown] the retries began {first - killed_at:.1f} s after the kill "
              "(their 30 s countdown ran on from the first attempt)")

        restarted = stack.cli("restart", run_id, "--fail-rate", "0", "--json", timeout=300)
        assert restarted.returncode == 0, restarted.stderr
        scores = ledger.outputs(run_id, [flow.evaluate_key(0), flow.evaluate_key(1)])
        from test_stages import tutorial_score

        assert [scores[flow.evaluate_key(i)]["score"] for i in (0, 1)] == [tutorial_score(17, 100, a) for a in (1.0, 0.1)]
    finally:
        stack.close()
