"""The worker's consumer, with task events sent in batches a few times a second.

Celery already buffers a worker's task events (``task-received``, ``task-started``,
``task-succeeded``, ...) and publishes each buffer as one ``task.multi`` message, but it
flushes on the next turn of the event loop, which in practice holds one event: three
Redis publishes per task, about 40 % of the worker's main process in a wide sweep
(bench/RESULTS.md). This consumer flushes at most every :data:`EVENT_FLUSH_INTERVAL`
seconds (or when Celery's buffer limit of 24 events is reached), so a publish carries
many events. Flower and ``celery events`` read ``task.multi`` like single events; they see
a task's state change up to that interval later. Buffered events are flushed when the
consumer stops.

Upstream code (Celery 5.7.0; ``tests/test_upstream_pins.py`` fails on another version and
when these change): ``celery.worker.consumer.Consumer.on_send_event_buffered`` (overridden
here), ``Consumer._flush_events``, ``Consumer.hub``, ``stop`` and ``shutdown`` in
https://github.com/celery/celery/blob/v5.7.0/celery/worker/consumer/consumer.py; the
``Events`` bootstep passing ``on_send_buffered=c.on_send_event_buffered`` (only with a hub) in
https://github.com/celery/celery/blob/v5.7.0/celery/worker/consumer/events.py; and
``EventDispatcher(buffer_limit=24, on_send_buffered=...)`` in
https://github.com/celery/celery/blob/v5.7.0/celery/events/dispatcher.py

Loaded only by name: ``worker_consumer`` = ``"pipeline.worker.consumer:BatchedEventsConsumer"``
in :func:`pipeline.celery_app.celery_config`.
"""
from __future__ import annotations

import time

from celery.worker.consumer import Consumer

EVENT_FLUSH_INTERVAL = 0.1
"""Seconds a buffered task event may wait before it is published."""

LOST_FLUSH_AFTER = 1.0
"""Seconds after which a scheduled flush that never ran counts as lost (the consumer's
event loop was reset, say after a broker connection error) and the next event schedules
another."""


class BatchedEventsConsumer(Consumer):
    """A Celery consumer that publishes buffered task events every :data:`EVENT_FLUSH_INTERVAL` s."""

    _flush_scheduled_until = 0.0
    """While monotonic time is below this, a flush is scheduled: events need not schedule one."""

    def on_send_event_buffered(self) -> None:
        """Called by the event dispatcher for every buffered event (any thread)."""
        now = time.monotonic()
        if not self.hub or now < self._flush_scheduled_until:
            return
        self._flush_scheduled_until = now + EVENT_FLUSH_INTERVAL + LOST_FLUSH_AFTER
        # call_soon is thread-safe; the timer is only touched from the loop's thread
        self.hub.call_soon(self._schedule_flush)

    def _schedule_flush(self) -> None:
        self.hub.call_later(EVENT_FLUSH_INTERVAL, self._flush_buffered)

    def _flush_buffered(self) -> None:
        self._flush_scheduled_until = 0.0
        self._flush_events()

    def stop(self) -> None:
        """Publish what is buffered, then stop as Celery's consumer does."""
        self._flush_events()
        super().stop()

    def shutdown(self) -> None:
        """Publish what is buffered, then shut down as Celery's consumer does."""
        self._flush_events()
        super().shutdown()
