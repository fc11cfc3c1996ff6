"""Lost messages: re-send an active run's unfinished tasks when none of its messages exists.

kombu's Redis transport takes a message off its queue with ``BRPOP`` and records it as
unacknowledged (the ``unacked`` hash) only once the worker has read it. A worker that
vanishes in between (a host cut off the network while its ``BRPOP`` was pending, a kill
at that very moment) leaves the message in no queue and in no unacked entry, where
neither the visibility timeout nor the reclaim of dead workers' messages
(:mod:`pipeline.worker.kombu_redis`) can find it; the run stops progressing.

Every worker runs :meth:`LostCheck.check` from its notification sender's loop
(:mod:`pipeline.notify.sender`). An active run (Pending or Running, sent, not cancelled)
among the newest ones counts as lost only when all of these hold, twice, at least
:data:`CONFIRM_AFTER` seconds apart and with the run's ``updated`` unchanged between them:

- it is a record :func:`pipeline.runs.submit.submit_run` wrote (artifacts root and flow
  digest recorded);
- it made no progress for ``PIPELINE_LOST_AFTER`` plus its own ``--sleep`` and
  ``--retry-delay`` (:func:`pipeline.ledger.status.is_stuck` with that limit);
- none of its tasks is Running or Retrying (a running task's message is the worker's;
  a retry's countdown may be long);
- a live worker consumes its queue and runs its flow version (else the run waits for
  one and is not lost);
- no message of it is in its queue's lists or in ``unacked`` (read in one MULTI): none
  whose Celery id is one of the run's recorded ids and none naming the run id at all (the
  chord's fan-out message carries only the run id).

The second look covers a message caught between ``BRPOP`` and its unacked record by the
first one. Then the run is restarted as a stuck run (:func:`pipeline.runs.restart.restart_run`):
every task not Success or Cached is sent again under new Celery ids, so any older message
still found later is a stale no-op; the ``RESTART`` script checks the run's ``updated``
did not change since it was read, so of two workers doing this at once only one sends.
Redis brokers only: RabbitMQ requeues the messages of a lost connection itself.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Iterable

import redis
from kombu.transport import redis as kombu_redis

from pipeline.ledger.records import Ledger
from pipeline.ledger.status import is_stuck
from pipeline.ledger.values import SUCCEEDED_TASK_STATES, TaskState, with_params
from pipeline.settings import DEFAULT_QUEUE, Settings

log = logging.getLogger(__name__)

LOST_SCAN_RUNS = 200
"""How many of the newest runs each check looks at (as the stuck check does)."""

CHECK_EVERY = 5.0
"""Most seconds between two checks of one worker (fewer when ``PIPELINE_LOST_AFTER`` is short)."""

CONFIRM_AFTER = 2.0
"""Fewest seconds between the two looks that must both find a run's messages gone."""

BUSY_TASK_STATES = frozenset({TaskState.RUNNING, TaskState.RETRYING})

UNACKED_KEY = kombu_redis.Channel.unacked_key
"""kombu's hash of unacknowledged messages (delivery tag -> ``[message, exchange, routing key]``)."""


def check_every(settings: Settings) -> float:
    """Seconds between two checks for ``settings``."""
    return min(CHECK_EVERY, max(settings.notify_interval, settings.lost_after / 4))


def queue_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps ``queue``'s messages in (one per priority step)."""
    channel = kombu_redis.Channel
    return [queue] + [f"{queue}{channel.sep}{step}" for step in channel.priority_steps if step]


def _header_id(message: Any) -> str | None:
    try:
        return str(message["headers"]["id"])
    except (KeyError, TypeError):
        return None


class Snapshot:
    """The messages of some queues and of ``unacked``, read at one instant."""

    def __init__(self, raws: Iterable[str]) -> None:
        self.raws: list[str] = []
        self.ids: set[str] = set()
        for raw in raws:
            self.raws.append(raw)
            try:
                parsed = json.loads(raw)
            except ValueError:
                continue
            if isinstance(parsed, list) and parsed:  # an unacked entry: [message, exchange, routing key]
                parsed = parsed[0]
            found = _header_id(parsed)
            if found:
                self.ids.add(found)

    def holds(self, run_id: str, celery_ids: Iterable[str]) -> bool:
        """True if a message has one of ``celery_ids`` or names ``run_id`` anywhere."""
        return bool(self.ids.intersection(celery_ids)) or any(run_id in raw for raw in self.raws)


def read_snapshot(broker: redis.Redis, queues: Iterable[str]) -> Snapshot:
    """Every message of ``queues`` and every unacked one, in one MULTI (an atomic read)."""
    pipe = broker.pipeline(transaction=True)
    names = sorted({name for queue in queues for name in queue_lists(queue)})
    for name in names:
        pipe.lrange(name, 0, -1)
    pipe.hvals(UNACKED_KEY)
    replies = pipe.execute()
    return Snapshot(_text(raw) for reply in replies for raw in reply)


def _text(raw: "bytes | str") -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


class LostCheck:
    """Finds active runs whose messages are all gone and restarts them (see the module)."""

    def __init__(self, ledger: Ledger, broker: redis.Redis, settings: Settings) -> None:
        self.ledger = ledger
        self.broker = broker
        self.settings = settings
        self.suspects: dict[str, tuple[str, float]] = {}
        """Run id -> (its ``updated``, when a look first found its messages gone)."""

    def idle_runs(self, now: float) -> list[dict[str, Any]]:
        """Active, sent runs idle past the limit, no task busy, a live worker of theirs there."""
        from pipeline.worker.liveness import consumers_of

        found = []
        for raw in self.ledger.list_runs(LOST_SCAN_RUNS):
            run = with_params(raw)
            if str(run.get("submitted") or "0") != "1" or str(run.get("cancelled") or "0") not in ("", "0"):
                continue
            if not run.get("artifacts") or not run.get("digest"):  # not a record submit_run wrote: never sent
                continue
            if not is_stuck(run, self.settings.lost_after, now):
                continue
            states = self.ledger.task_states(run["id"])
            if any(state in BUSY_TASK_STATES for state in states.values()):
                continue
            if not consumers_of(self.ledger, run.get("queue") or DEFAULT_QUEUE, run.get("digest") or None):
                continue
            found.append({**run, "_states": states})
        return found

    def check(self, now: float | None = None) -> list[Any]:
        """One look; restart the runs found lost twice; return what :func:`restart_run` did for each."""
        from pipeline.runs.restart import RestartRefused, restart_run

        now = time.time() if now is None else now
        clock = time.monotonic()
        runs = self.idle_runs(now)
        self.suspects = {k: v for k, v in self.suspects.items() if k in {r["id"] for r in runs}}
        if not runs:
            return []
        snapshot = read_snapshot(self.broker, {r.get("queue") or DEFAULT_QUEUE for r in runs})
        restarted = []
        for run in runs:
            run_id, updated = run["id"], run.get("updated") or run.get("created") or ""
            states = run["_states"]
            ids = [cid for key, cid in self.ledger.task_ids(run_id).items()
                   if states.get(key) not in SUCCEEDED_TASK_STATES]
            if snapshot.holds(run_id, ids):
                self.suspects.pop(run_id, None)
                continue
            seen = self.suspects.get(run_id)
            if seen is None or seen[0] != updated:
                self.suspects[run_id] = (updated, clock)
                continue
            if clock - seen[1] < CONFIRM_AFTER:
                continue
            del self.suspects[run_id]
            try:
                done = restart_run(self.ledger, run_id, self.settings.lost_after)
            except RestartRefused as exc:  # it moved meanwhile, or another worker restarted it first
                log.info("run %s not restarted after all: %s", run_id, exc)
                continue
            idle = now - float(updated)
            log.warning("run %s made no progress for %.0f s and none of its messages is queued or "
                        "unacknowledged (lost between Redis and a worker): sent %s again (PIPELINE_LOST_AFTER)",
                        run_id, idle, ", ".join(done.keys))
            restarted.append(done)
        return restarted
