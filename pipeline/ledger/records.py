"""The run ledger: runs, task states, attempts, outputs and logs, kept in Redis.

Tasks write it (through atomic Lua scripts, so concurrent tasks never lose an update);
the CLI reads it. It, not Celery's result backend, is the record of a run: restart and
status read only from here.
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterable, Mapping, NamedTuple

import redis

from pipeline.ledger import scripts as ledger_scripts
from pipeline.definition.flow import REFERENCE_STAGE, key_prefix
from pipeline.ledger.values import Begin, BeginRead, SupersededAttempt, TaskState, earlier_attempt, encode_field
from pipeline.settings import KEY_PREFIX



class RunKeys(NamedTuple):
    """The Redis keys of one run, in the order the Lua scripts take them as KEYS[1..12]
    (see :mod:`pipeline.ledger.scripts`). Each but ``run`` and ``logs`` is a hash by task key."""

    run: str
    """The run's own fields."""
    states: str
    attempts: str
    started: str
    ended: str
    outputs: str
    errors: str
    logs: str
    """Stream of the lines the tasks printed."""
    task_ids: str
    """Task key -> Celery id of the message expected to run it now."""
    history: str
    """Task key -> JSON list of the task's earlier attempts."""
    files: str
    """Task key -> JSON ``{file name: {size, sha256}}`` of the files its last attempt wrote."""
    cache: str
    """Task key -> JSON ``{key, run_id, task}``: the cache entry a Cached task was served from."""


_SUFFIXES = ("state", "attempts", "started", "ended", "output", "error", "logs", "celery", "history", "files",
             "cache")
"""Key suffixes of :class:`RunKeys` after ``run``, in its order (stored names: never change them)."""


_shared: dict[str, "Ledger"] = {}


def shared_ledger(url: str) -> "Ledger":
    """The process-wide ledger in the Redis at ``url`` (one per URL; its client is
    :func:`pipeline.redis_conn.shared_client`'s, its retention the settings' at first use)."""
    book = _shared.get(url)
    if book is None:
        from pipeline.redis_conn import shared_client
        from pipeline.settings import get_settings

        book = _shared[url] = Ledger(shared_client(url), get_settings().retention_seconds)
    return book


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

    def keys(self, run_id: str) -> RunKeys:
        """Every key of the run's record but :meth:`done_key`."""
        base = self.run_key(run_id)
        return RunKeys(base, *(f"{base}:{suffix}" for suffix in _SUFFIXES))

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
            flat += [name, encode_field(value)]
        args = [self.ttl, repr(now), len(fields), *flat, *task_keys]
        keys = self.keys(run_id)
        created = bool(self._create(keys=[keys.run, keys.states], args=args))
        if created:
            try:
                self.r.zadd(self.runs_index, {run_id: now})
                self.forget_expired(now)
            except redis.ResponseError:  # a full Redis: the caller sees a failure, so no record stays
                self.discard_run(run_id)
                raise
        return created

    def discard_run(self, run_id: str) -> None:
        """Delete every key of ``run_id`` and its index entry at once (a submission rolled back).

        Plain DEL and ZREM, which free memory: a full Redis (``noeviction``) still runs them,
        where it refuses a script, and any command queued inside MULTI (so no transaction).
        """
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(*self.keys(run_id), self.done_key(run_id))
        pipe.zrem(self.runs_index, run_id)
        pipe.execute()

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set fields of an existing run."""
        self.r.hset(self.run_key(run_id), mapping={k: encode_field(v) for k, v in fields.items()})

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

    def state_counts(self, run_id: str) -> dict[str, int]:
        """Task state -> how many of the run's tasks are in it, in one round trip."""
        counts: dict[str, int] = {}
        for state in self.r.hvals(self.keys(run_id).states):
            counts[state] = counts.get(state, 0) + 1
        return counts

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest runs first, skipping index entries whose record has expired."""
        ids = self.r.zrevrange(self.runs_index, 0, max(0, limit - 1))
        pipe = self.r.pipeline(transaction=False)
        for run_id in ids:
            pipe.hgetall(self.run_key(run_id))
        return [raw for raw in pipe.execute() if raw]

    # -- tasks ------------------------------------------------------------------------
    def begin_task(self, run_id: str, key: str, task_id: str = "", digest: str = "") -> Begin:
        """Mark ``key`` Running and count an attempt, unless it must not run (see Begin).

        ``task_id``: the Celery id of the message; a message the run no longer expects
        (a restart re-sent the task under another id) gets verdict ``stale``.
        ``digest``: the flow-version digest of the caller's code; a run recorded under
        another digest gets verdict ``version`` and nothing changes.
        """
        args = [self.ttl, repr(time.time()), key, task_id or "", digest or ""]
        verdict, attempts = self._begin(keys=self.keys(run_id), args=args)
        return Begin(verdict, int(attempts))

    def set_retrying(self, run_id: str, key: str, error: str, task_id: str = "", attempt: int = 0) -> None:
        """Mark ``key`` Retrying (a later attempt is scheduled); a stale ``task_id`` changes nothing.

        ``attempt``: the number :meth:`begin_task` gave this attempt (0: unchecked); raises
        :class:`SupersededAttempt` (nothing changed) if the task has begun again since.
        """
        args = [self.ttl, repr(time.time()), key, error, task_id or "", attempt]
        if self._retrying(keys=self.keys(run_id), args=args) == 2:
            raise SupersededAttempt(f"{key} of run {run_id}: attempt {attempt} was superseded")

    def finish_task(
        self,
        run_id: str,
        key: str,
        state: str,
        *,
        output: Any = None,
        error: str = "",
        trigger_failed: Iterable[str] = (),
        task_id: str = "",
        attempt: int = 0,
        files: Mapping[str, dict[str, Any]] | None = None,
        cached_from: Mapping[str, Any] | None = None,
    ) -> str:
        """End ``key`` in ``state`` (and mark ``trigger_failed`` keys TriggerFailed).

        Returns the run's end state when this call finished the run, else ``""``. A stale
        ``task_id`` (see :meth:`begin_task`) changes nothing. ``attempt``: the number
        :meth:`begin_task` gave this attempt (0: unchecked); raises :class:`SupersededAttempt`
        (nothing but ``files`` recorded) if the task has begun again since. ``files``: what
        the attempt wrote (file name -> ``{size, sha256}``), recorded under ``key`` by the
        same script, whatever its verdict (the files are on disk). ``cached_from``: for a
        Cached task, the entry it was served from (``{key, run_id, task}``).
        """
        out = "" if output is None else json.dumps(output)
        written = json.dumps(files, sort_keys=True) if files else ""
        source = json.dumps(dict(cached_from), sort_keys=True) if cached_from else ""
        args = [self.ttl, repr(time.time()), key_prefix(REFERENCE_STAGE), key, state, out, error, task_id or "",
                attempt, written, source, *trigger_failed]
        ended = self._finish(keys=self.keys(run_id), args=args) or ""
        if ended == "superseded":
            raise SupersededAttempt(f"{key} of run {run_id}: attempt {attempt} was superseded")
        return ended

    def outputs(self, run_id: str, keys: Iterable[str]) -> dict[str, Any]:
        """Stored outputs of ``keys`` (missing ones left out)."""
        keys = list(keys)
        if not keys:
            return {}
        values = self.r.hmget(self.keys(run_id).outputs, keys)
        return {k: json.loads(v) for k, v in zip(keys, values) if v is not None}

    def task_states(self, run_id: str) -> dict[str, str]:
        """Task key -> state."""
        return self.r.hgetall(self.keys(run_id).states)

    def tasks(self, run_id: str, order: Iterable[str]) -> list[dict[str, Any]]:
        """One dict a task, in ``order``: key, state, attempts, started, ended (unix), output,
        error, ``history``: its earlier attempts, oldest first (each a dict of attempt,
        state, started, ended and error; ``Unfinished`` for one that recorded no end), and
        ``cached_from``: the cache entry a Cached task was served from (else None)."""
        pipe = self.r.pipeline(transaction=False)
        names = self.keys(run_id)
        for name in (names.states, names.attempts, names.started, names.ended, names.outputs, names.errors,
                     names.history, names.cache):
            pipe.hgetall(name)
        states, attempts, started, ended, outputs, errors, history, cache = pipe.execute()
        rows = []
        for key in order:
            rows.append(
                {
                    "key": key,
                    "state": states.get(key, TaskState.PENDING.value),
                    "attempts": int(attempts.get(key, 0)),
                    "started": float(started[key]) if key in started else None,
                    "ended": float(ended[key]) if key in ended else None,
                    "output": json.loads(outputs[key]) if key in outputs else None,
                    "error": errors.get(key),
                    "history": [earlier_attempt(a) for a in json.loads(history[key])] if key in history else [],
                    "cached_from": json.loads(cache[key]) if key in cache else None,
                }
            )
        return rows

    # -- logs -------------------------------------------------------------------------
    def append_log(self, run_id: str, key: str, line: str, ts: float | None = None) -> None:
        """Store one printed line of task ``key``."""
        self.append_log_lines(run_id, key, [line], ts)

    def append_log_lines(self, run_id: str, key: str, lines: Iterable[str], ts: float | None = None) -> None:
        """Store lines of task ``key`` in one round trip, in order, all at time ``ts`` (default now)."""
        stream = self.keys(run_id).logs
        stamp = repr(ts or time.time())
        pipe = self.r.pipeline(transaction=False)
        for line in lines:
            pipe.xadd(stream, {"t": stamp, "task": key, "line": line})
        pipe.expire(stream, self.ttl)
        pipe.execute()

    def read_logs(self, run_id: str, after: str = "-", count: int | None = None) -> list[tuple[str, dict]]:
        """Log records after stream id ``after`` (exclusive unless ``-``): ``(id, fields)``."""
        start = after if after == "-" else f"({after}"
        return self.r.xrange(self.keys(run_id).logs, min=start, max="+", count=count)

    def log_tail(self, run_id: str, count: int) -> tuple[list[tuple[str, dict]], int]:
        """The last ``count`` log records, oldest first, and how many the run has in all."""
        pipe = self.r.pipeline(transaction=False)
        pipe.xrevrange(self.keys(run_id).logs, max="+", min="-", count=count)
        pipe.xlen(self.keys(run_id).logs)
        newest_first, total = pipe.execute()
        return newest_first[::-1], int(total)

    # -- Celery ids, restart and cancel (see pipeline/runs/restart.py, pipeline/runs/cancel.py) -----
    def _script(self, name: str):
        cache = self.__dict__.setdefault("_more_scripts", {})
        if name not in cache:
            cache[name] = self.r.register_script(getattr(ledger_scripts, name))
        return cache[name]

    def record_task_ids(self, run_id: str, ids: dict[str, str]) -> None:
        """Record the Celery ids of a canvas about to be sent (task key -> id)."""
        if not ids:
            return
        key = self.keys(run_id).task_ids
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, mapping=ids)
        pipe.expire(key, self.ttl)
        pipe.execute()

    def task_ids(self, run_id: str) -> dict[str, str]:
        """Task key -> Celery id of its latest message."""
        return self.r.hgetall(self.keys(run_id).task_ids)

    def task_ids_of(self, run_id: str, keys: list[str]) -> list[str | None]:
        """The Celery id of each of ``keys``'s latest message, in order (None where none is recorded)."""
        return [i or None for i in self.r.hmget(self.keys(run_id).task_ids, keys)]

    def reset_tasks(self, run_id: str, seen_state: str, seen_updated: str, ids: dict[str, str],
                    params: dict | None = None) -> tuple[str, int, str]:
        """Reset the tasks ``ids`` names to Pending under their new Celery ids, atomically,
        and replace the run's parameters with ``params`` if given (in the same step).

        Only if the run's state and ``updated`` are still ``seen_*`` (else verdict
        ``changed``). Returns ``(verdict, remaining, run state)``; verdict ``ok`` on success.
        """
        flat = [part for pair in ids.items() for part in pair]
        new_params = "" if params is None else json.dumps(params)
        args = [self.ttl, repr(time.time()), key_prefix(REFERENCE_STAGE), seen_state, seen_updated, new_params, *flat]
        reply = self._script("RESTART")(keys=self.keys(run_id), args=args)
        if reply[0] != "ok":
            return reply[0], 0, ""
        return "ok", int(reply[1]), reply[2]

    def cancel_run(self, run_id: str) -> tuple[str, list[tuple[str, str, str]]]:
        """Cancel the run atomically: every unfinished task Cancelled (error ``cancelled``), run Cancelled.

        Returns ``(verdict, tasks)``: verdict ``cancelled`` with ``(key, state before, Celery
        id)`` of each task it stopped; ``missing``; or ``finished`` (nothing changed).
        """
        reply = self._script("CANCEL")(
            keys=self.keys(run_id), args=[self.ttl, repr(time.time()), key_prefix(REFERENCE_STAGE)]
        )
        rest = reply[1:] if reply[0] == "cancelled" else []
        return reply[0], [tuple(rest[i : i + 3]) for i in range(0, len(rest), 3)]

    def wait_logs(self, run_id: str, after: str, block_ms: int | None = None,
                  count: int | None = None) -> list[tuple[str, dict]]:
        """Log records after stream id ``after``, waiting up to ``block_ms`` for one (None/0: no wait)."""
        reply = self.r.xread({self.keys(run_id).logs: after}, count=count, block=block_ms or None)
        return reply[0][1] if reply else []

    # -- notifications (see notifications.py) ------------------------------------------
    @property
    def notifications(self):
        """The notification deliveries in this ledger's Redis (a :class:`~pipeline.ledger.notifications.NotificationBook`)."""
        from pipeline.ledger.notifications import NotificationBook

        return NotificationBook(self.r)

    # -- flow versions and live workers (see versions.py, workers.py) -----------------
    def register_version(self) -> int:
        """The number of this code's flow version, registering it if new."""
        from pipeline.ledger import versions

        return int(versions.register(self.r)["version"])

    def count_version_run(self, version: int) -> None:
        """Count one more run of flow ``version``."""
        from pipeline.ledger import versions

        versions.count_run(self.r, version)

    def version_table(self) -> list[dict]:
        """Every flow version, oldest first, with the live workers running each
        (see :func:`pipeline.ledger.versions.version_table`)."""
        from pipeline.ledger import versions, workers

        return versions.version_table(self.r, workers.worker_records(self.r))

    def version_of(self, digest: str) -> int | None:
        """The number of flow version ``digest`` (None: not registered)."""
        from pipeline.ledger import versions

        return versions.version_of(self.r, digest)

    def worker_records(self) -> dict[str, dict]:
        """Live worker (``<node name>/<pid>``) -> its record: queues, flow-version digest, ..."""
        from pipeline.ledger import workers

        return workers.worker_records(self.r)

    def live_workers(self) -> dict[str, list[str]]:
        """Live worker (``<node name>/<pid>``) -> the queues it consumes."""
        from pipeline.ledger import workers

        return workers.live_workers(self.r)

    # -- retention --------------------------------------------------------------------
    def forget_expired(self, now: float | None = None, limit: int = 10000) -> int:
        """Drop runs-index entries whose record has expired; return how many.

        An expired record was created at least one retention period ago, so only the
        entries older than that are looked at.
        """
        cutoff = (now or time.time()) - self.ttl
        return int(self._script("FORGET_EXPIRED")(keys=[self.runs_index], args=[repr(cutoff), self.run_key(""), limit]))

    def delete_run(self, run_id: str, updated: str | None) -> int:
        """Delete every key of ``run_id`` and its index entry, unless its ``updated`` field
        changed from ``updated`` since it was read (None: there was no record).

        Returns 1 (deleted), 0 (only leftovers of an expired record) or -1 (skipped).
        """
        keys = [*self.keys(run_id), self.done_key(run_id), self.runs_index]
        return int(self._script("DELETE_RUN")(keys=keys, args=[run_id, updated or ""]))

    # -- one round trip a task ------------------------------------------------------
    def begin_read(
        self, run_id: str, key: str, read: Iterable[str] = (), known_created: str = "", task_id: str = "",
        digest: str = "",
    ) -> BeginRead:
        """:meth:`begin_task`, and in the same round trip what the task needs to run.

        Also returns the run's ``created`` and ``artifacts`` fields, its parameters unless
        ``known_created`` equals ``created`` (the caller already has them), and the stored
        outputs of the task keys ``read`` and the records of the files they wrote (missing
        ones left out; see :meth:`outputs_and_files`). ``task_id``: the Celery
        id of the message (a stale one gets verdict ``stale``, as with :meth:`begin_task`);
        ``digest``: the caller's flow-version digest (verdict ``version`` if the run's differs).
        """
        read = list(read)
        begin_args = [self.ttl, repr(time.time()), key, task_id or "", digest or ""]
        args = [*begin_args, known_created, *read, len(begin_args)]
        reply = self._script("BEGIN_READ")(keys=self.keys(run_id), args=args)
        verdict, attempts, created, artifacts, params, *rest = reply
        return BeginRead(
            Begin(verdict, int(attempts)), created or "", artifacts or "",
            None if params is None else json.loads(params),
            {k: json.loads(v) for k, v in zip(read, rest) if v is not None},
            {k: json.loads(v) for k, v in zip(read, rest[len(read):]) if v is not None},
        )

    def outputs_and_files(self, run_id: str, keys: Iterable[str]) -> tuple[dict[str, Any], dict[str, dict]]:
        """Stored outputs of ``keys`` and the records of the files they wrote (task key ->
        ``{file name: {size, sha256}}``), missing ones left out, in one round trip."""
        keys = list(keys)
        if not keys:
            return {}, {}
        names = self.keys(run_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(names.outputs, keys)
        pipe.hmget(names.files, keys)
        outputs, files = pipe.execute()
        return ({k: json.loads(v) for k, v in zip(keys, outputs) if v is not None},
                {k: json.loads(v) for k, v in zip(keys, files) if v is not None})

    # -- waking a waiter when a run ends ----------------------------------------------
    def done_key(self, run_id: str) -> str:
        """List the task that ends ``run_id`` pushes to (see :meth:`signal_finished`)."""
        return f"{self.run_key(run_id)}:done"

    def signal_finished(self, run_id: str) -> None:
        """Wake one :meth:`wait_signal` of ``run_id`` (the run just ended); kept 60 s."""
        key = self.done_key(run_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(key, "1")
        pipe.expire(key, 60)
        pipe.execute()

    def wait_signal(self, run_id: str, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for :meth:`signal_finished`; True if it came."""
        return self.r.blpop([self.done_key(run_id)], timeout=timeout) is not None
