"""The run ledger: runs, task states, attempts, outputs and logs, kept in Redis.

Tasks write it (through atomic Lua scripts, so concurrent tasks never lose an update);
the CLI reads it. It, not Celery's result backend, is the record of a run: restart and
status read only from here.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone
from typing import Any, Iterable

import redis

from pipeline import ledger_scripts
from pipeline.flow import REFERENCE_STAGE
from pipeline.settings import KEY_PREFIX

TASK_STATES = ("Pending", "Running", "Retrying", "Success", "Failed", "TriggerFailed")
"""Every state a task can be in."""

RUN_STATES = ("Pending", "Running", "Success", "Failed", "Cancelled")
"""Every state a run can be in."""

TERMINAL_TASK_STATES = frozenset({"Success", "Failed", "TriggerFailed"})
"""Task states that end a task until a restart."""

FINISHED_RUN_STATES = frozenset({"Success", "Failed", "Cancelled"})
"""Run states after which nothing runs until a restart."""

_PER_TASK = ("state", "attempts", "started", "ended", "output", "error")


def iso(ts: float | str | None) -> str | None:
    """A stored unix time as ISO-8601 UTC with ``Z`` (None stays None)."""
    if ts in (None, ""):
        return None
    moment = datetime.fromtimestamp(float(ts), tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Begin:
    """What :meth:`Ledger.begin_task` decided: run the body, or why not."""

    verdict: str  # "run", "success", "cancelled", "terminal" or "missing"
    attempts: int = 0


class Ledger:
    """Read and write run records in one Redis."""

    def __init__(self, client: redis.Redis, retention_seconds: float) -> None:
        self.r = client
        self.ttl = max(1, int(retention_seconds))
        self._create = client.register_script(ledger_scripts.CREATE)
        self._begin = client.register_script(ledger_scripts.BEGIN)
        self._retrying = client.register_script(ledger_scripts.RETRYING)
        self._finish = client.register_script(ledger_scripts.FINISH)

    # -- keys -------------------------------------------------------------------------
    @staticmethod
    def run_key(run_id: str) -> str:
        """The hash holding a run's own fields."""
        return f"{KEY_PREFIX}:run:{run_id}"

    def _keys(self, run_id: str) -> list[str]:
        base = self.run_key(run_id)
        return [base] + [f"{base}:{part}" for part in _PER_TASK] + [f"{base}:logs"]

    @property
    def runs_index(self) -> str:
        """Sorted set of run ids by creation time."""
        return f"{KEY_PREFIX}:runs"

    # -- runs -------------------------------------------------------------------------
    def create_run(self, run_id: str, fields: dict[str, Any], task_keys: Iterable[str]) -> bool:
        """Record a new run with every task Pending; False if the run id exists (first writer wins)."""
        now = time.time()
        flat: list[Any] = []
        for name, value in fields.items():
            flat += [name, _encode(value)]
        args = [self.ttl, repr(now), len(fields), *flat, *task_keys]
        created = bool(self._create(keys=self._keys(run_id)[:2], args=args))
        if created:
            self.r.zadd(self.runs_index, {run_id: now})
        return created

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set fields of an existing run."""
        self.r.hset(self.run_key(run_id), mapping={k: _encode(v) for k, v in fields.items()})

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The run's fields (``params`` decoded), or None if there is no such run."""
        raw = self.r.hgetall(self.run_key(run_id))
        if not raw:
            return None
        if "params" in raw:
            raw["params"] = json.loads(raw["params"])
        return raw

    def progress(self, run_id: str) -> tuple[str | None, int, int]:
        """``(run state, tasks finished, tasks in all)`` in one round trip."""
        state, remaining, total = self.r.hmget(self.run_key(run_id), "state", "remaining", "ntasks")
        total_n = int(total or 0)
        return state, total_n - int(remaining or 0), total_n

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest runs first, skipping index entries whose record has expired."""
        ids = self.r.zrevrange(self.runs_index, 0, max(0, limit - 1))
        pipe = self.r.pipeline(transaction=False)
        for run_id in ids:
            pipe.hgetall(self.run_key(run_id))
        return [raw for raw in pipe.execute() if raw]

    # -- tasks ------------------------------------------------------------------------
    def begin_task(self, run_id: str, key: str) -> Begin:
        """Mark ``key`` Running and count an attempt, unless it must not run (see Begin)."""
        verdict, attempts = self._begin(keys=self._keys(run_id)[:7], args=[self.ttl, repr(time.time()), key])
        return Begin(verdict, int(attempts))

    def set_retrying(self, run_id: str, key: str, error: str) -> None:
        """Mark ``key`` Retrying (a later attempt is scheduled)."""
        self._retrying(keys=self._keys(run_id)[:7], args=[self.ttl, repr(time.time()), key, error])

    def finish_task(
        self,
        run_id: str,
        key: str,
        state: str,
        *,
        output: Any = None,
        error: str = "",
        trigger_failed: Iterable[str] = (),
    ) -> str:
        """End ``key`` in ``state`` (and mark ``trigger_failed`` keys TriggerFailed).

        Returns the run's end state when this call finished the run, else ``""``.
        """
        out = "" if output is None else json.dumps(output)
        args = [self.ttl, repr(time.time()), REFERENCE_STAGE + "[", key, state, out, error, *trigger_failed]
        return self._finish(keys=self._keys(run_id)[:7], args=args) or ""

    def outputs(self, run_id: str, keys: Iterable[str]) -> dict[str, Any]:
        """Stored outputs of ``keys`` (missing ones left out)."""
        keys = list(keys)
        if not keys:
            return {}
        values = self.r.hmget(self._keys(run_id)[5], keys)
        return {k: json.loads(v) for k, v in zip(keys, values) if v is not None}

    def task_states(self, run_id: str) -> dict[str, str]:
        """Task key -> state."""
        return self.r.hgetall(self._keys(run_id)[1])

    def tasks(self, run_id: str, order: Iterable[str]) -> list[dict[str, Any]]:
        """One dict a task, in ``order``: key, state, attempts, started, ended (unix), output, error."""
        pipe = self.r.pipeline(transaction=False)
        for name in self._keys(run_id)[1:7]:
            pipe.hgetall(name)
        states, attempts, started, ended, outputs, errors = pipe.execute()
        rows = []
        for key in order:
            rows.append(
                {
                    "key": key,
                    "state": states.get(key, "Pending"),
                    "attempts": int(attempts.get(key, 0)),
                    "started": float(started[key]) if key in started else None,
                    "ended": float(ended[key]) if key in ended else None,
                    "output": json.loads(outputs[key]) if key in outputs else None,
                    "error": errors.get(key),
                }
            )
        return rows

    # -- logs -------------------------------------------------------------------------
    def append_log(self, run_id: str, key: str, line: str, ts: float | None = None) -> None:
        """Store one printed line of task ``key``."""
        stream = self._keys(run_id)[7]
        pipe = self.r.pipeline(transaction=False)
        pipe.xadd(stream, {"t": repr(ts or time.time()), "task": key, "line": line})
        pipe.expire(stream, self.ttl)
        pipe.execute()

    def read_logs(self, run_id: str, after: str = "-", count: int | None = None) -> list[tuple[str, dict]]:
        """Log records after stream id ``after`` (exclusive unless ``-``): ``(id, fields)``."""
        start = after if after == "-" else f"({after}"
        return self.r.xrange(self._keys(run_id)[7], min=start, max="+", count=count)

    # -- one round trip a task ------------------------------------------------------
    @cached_property
    def _begin_read(self):
        return self.r.register_script(ledger_scripts.BEGIN_READ)

    def begin_read(
        self, run_id: str, key: str, read: Iterable[str] = (), known_created: str = "", task_id: str = ""
    ) -> "BeginRead":
        """:meth:`begin_task`, and in the same round trip what the task needs to run.

        Also returns the run's ``created`` and ``artifacts`` fields, its parameters unless
        ``known_created`` equals ``created`` (the caller already has them), and the stored
        outputs of the task keys ``read`` (missing ones left out). ``task_id``: the Celery
        id of the message, for a BEGIN script that checks it (passed as its 4th argument).
        """
        read = list(read)
        guarded = getattr(self, "_guarded_keys", None)  # a ledger with per-task Celery ids
        keys = guarded(run_id) if guarded else self._keys(run_id)[:7]
        begin_args = [self.ttl, repr(time.time()), key, task_id or ""]
        args = [*begin_args, known_created, *read, len(begin_args)]
        verdict, attempts, created, artifacts, params, *outputs = self._begin_read(keys=keys, args=args)
        return BeginRead(
            Begin(verdict, int(attempts)), created or "", artifacts or "",
            None if params is None else json.loads(params),
            {k: json.loads(v) for k, v in zip(read, outputs) if v is not None},
        )

    def append_logs(self, run_id: str, key: str, lines: list[tuple[str, float]]) -> None:
        """Store printed lines ``(line, unix time)`` of task ``key``, in order, in one round trip."""
        if not lines:
            return
        stream = self._keys(run_id)[7]
        pipe = self.r.pipeline(transaction=False)
        for line, ts in lines:
            pipe.xadd(stream, {"t": repr(ts), "task": key, "line": line})
        pipe.expire(stream, self.ttl)
        pipe.execute()

    # -- waking a waiter when a run ends ----------------------------------------------
    def signal_finished(self, run_id: str) -> None:
        """Wake one :meth:`wait_signal` of ``run_id`` (the run just ended); kept 60 s."""
        key = f"{self.run_key(run_id)}:done"
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(key, "1")
        pipe.expire(key, 60)
        pipe.execute()

    def wait_signal(self, run_id: str, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for :meth:`signal_finished`; True if it came."""
        return self.r.blpop([f"{self.run_key(run_id)}:done"], timeout=timeout) is not None


def _encode(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if value is None:
        return ""
    return str(value)


@dataclass(frozen=True)
class BeginRead:
    """What :meth:`Ledger.begin_read` returns."""

    begin: Begin
    created: str
    """The run's ``created`` field (identifies this incarnation of the run id)."""
    artifacts: str
    params: dict | None
    """The run's parameters; None when the caller said it already had them."""
    outputs: dict[str, Any] = field(default_factory=dict)
