"""What a worker skips or batches for speed (bench/RESULTS.md), against a real Redis and worker.

- task events go out in batches (``task.multi``), yet every task's received, started and
  succeeded events arrive (pipeline/worker/consumer.py);
- Celery's result store stays empty (``task_ignore_result``) while chords still complete;
- without ``--log-tasks`` the worker's log has no per-task "received"/"succeeded" lines;
- kombu's channel reuses one Redis client object (pipeline/worker/kombu_redis.py).
"""
from __future__ import annotations

import base64
import json
import time
from collections import Counter
from dataclasses import replace

from conftest import pipeline_env, run_cli, start_worker, stop_process
from pipeline.definition import flow
WORKER_EVENTS = ("task-received", "task-started", "task-succeeded")


def decode(raw: bytes) -> list[dict]:
    """The events in one message published on Celery's event exchange."""
    envelope = json.loads(raw)
    body = envelope["body"]
    if envelope["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    events = json.loads(body)
    return events if isinstance(events, list) else [events]


def test_prefork_worker_batches_events_and_stores_no_results(clean_redis, tmp_path):
    worker = start_worker(clean_redis.url, tmp_path / "worker.log", "--pool", "prefork", "--concurrency", "2",
                          "--label", "overheads")
    client = clean_redis.client()
    pubsub = client.pubsub()
    pubsub.psubscribe("*celeryev*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
    try:
        env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "art"))
        result = run_cli("sweep", "--alphas", "1.0", "0.1", "0.01", "--label", "overheads", "--json", env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["state"] == "Success"  # the chord completed without stored results
        n_tasks = len(flow.task_keys(3)) + 1  # and the fan-out task

        seen: Counter = Counter()
        messages = 0
        deadline = time.time() + 10
        while time.time() < deadline and seen["task-succeeded"] < n_tasks:
            message = pubsub.get_message(timeout=0.5)
            if not message or message["type"] != "pmessage":
                continue
            events = [e for e in decode(message["data"]) if e["type"] in WORKER_EVENTS]
            if events:
                messages += 1
                seen.update(e["type"] for e in events)
    finally:
        pubsub.close()
        stop_process(worker.proc)

    assert all(seen[kind] == n_tasks for kind in WORKER_EVENTS), seen
    log = worker.text()  # no --log-tasks: Celery's per-task lines are left out, printed lines stay
    assert "] received" not in log and " succeeded in " not in log
    assert log.count("train_model begin") == 3
    events = sum(seen.values())
    assert messages * 3 <= events, f"{events} task events in {messages} publishes: not batched"
    assert not list(client.scan_iter("celery-task-meta-*")), "Celery results were stored"


def test_kombu_channel_reuses_its_client_until_the_pool_changes(clean_redis):
    from pipeline.celery_app import app, configure
    from pipeline.worker.kombu_redis import Channel
    from pipeline.settings import get_settings

    configure(app, replace(get_settings(), broker_url=clean_redis.url, result_backend=clean_redis.url))
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            first.set("kombu-reuse", "1")
        channel._pool = None  # what kombu does after a connection error
        with channel.conn_or_acquire() as third:
            assert third is not first and third.get("kombu-reuse") == b"1"


class RecordingHub:
    """Stands in for kombu's hub: records what the consumer schedules, runs it on demand."""

    def __init__(self) -> None:
        self.soon: list = []
        self.later: list = []

    def call_soon(self, callback) -> None:
        self.soon.append(callback)

    def call_later(self, delay: float, callback) -> None:
        self.later.append((delay, callback))


def test_event_flush_is_scheduled_once_and_again_after_a_lost_timer(monkeypatch):
    from pipeline.worker import consumer as worker_consumer
    from pipeline.worker.consumer import EVENT_FLUSH_INTERVAL, LOST_FLUSH_AFTER, BatchedEventsConsumer

    clock = [100.0]
    monkeypatch.setattr(worker_consumer.time, "monotonic", lambda: clock[0])
    consumer = BatchedEventsConsumer.__new__(BatchedEventsConsumer)  # only the flush logic is under test
    consumer.hub, flushes = RecordingHub(), []
    consumer._flush_events = lambda: flushes.append(clock[0])

    for _ in range(5):  # a burst of events: one flush scheduled
        consumer.on_send_event_buffered()
    assert len(consumer.hub.soon) == 1
    consumer.hub.soon.pop()()
    delay, flush = consumer.hub.later.pop()
    assert delay == EVENT_FLUSH_INTERVAL
    clock[0] += delay
    flush()
    assert flushes == [clock[0]]

    consumer.on_send_event_buffered()  # the next event schedules the next flush
    assert len(consumer.hub.soon) == 1
    consumer.hub.soon.clear()  # ... which is lost: the event loop was reset
    clock[0] += EVENT_FLUSH_INTERVAL
    consumer.on_send_event_buffered()
    assert not consumer.hub.soon, "rescheduled while the first could still run"
    clock[0] += LOST_FLUSH_AFTER
    consumer.on_send_event_buffered()
    assert len(consumer.hub.soon) == 1, "a lost flush must not stop events for good"
