"""Creating, submitting and waiting for runs: what the CLI's commands call."""
from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import redis

from pipeline.definition import flow

from pipeline.definition.canvas import build_canvas
from pipeline.celery_app import app
from pipeline.runs.dispatch import send_recorded
from pipeline.ledger.records import Ledger
from pipeline.ledger.versions import current_digest
from pipeline.ledger.values import FINISHED_RUN_STATES, RunState
from pipeline.definition.naming import DEFAULT_N_SAMPLES, alpha_name
from pipeline.settings import DEFAULT_QUEUE, get_settings
from pipeline.artifacts.store import normalize_root, run_location
from pipeline.ledger.claims import claim_submission, release_submission
from pipeline.runs.stuck import RunLost, RunStuck, stuck_reason


RECONNECT_EVERY = 1.0
"""Seconds between attempts of :func:`wait_for_run` to reach Redis again after losing it."""

STUCK_CHECK_EVERY = 1.0
"""Seconds between two checks of :func:`wait_for_run` whether the run it waits on is stuck."""


@dataclass(frozen=True)
class RunRequest:
    """Everything a run is parameterised by (validated before it gets here)."""

    alphas: list[float | None]
    """Alphas of the sweep; ``[None]`` is the linear run."""
    artifacts_root: str | Path
    """A local path or an fsspec URL; stored normalized (see :func:`pipeline.artifacts.store.normalize_root`)."""
    n_samples: int = DEFAULT_N_SAMPLES
    sleep: float = 0.0
    retries: int = 0
    retry_delay: float = 0.0
    fail_rate: float = 0.0
    label: str | None = None
    tick: datetime | None = None
    notify: tuple[str, ...] = ()
    """Notification destinations (checked URLs; see pipeline/notify/destinations.py)."""
    notify_events: tuple[str, ...] = ()
    """Which events are sent to them (short names: ``failed``, ``stuck``, ...)."""
    cache: str = "off"
    """The run's use of the stage cache, one of :data:`pipeline.settings.CACHE_MODES`."""

    @property
    def queue(self) -> str:
        """The queue every task of the run is routed to."""
        return self.label or DEFAULT_QUEUE

    def params(self) -> dict:
        """The parameters as stored in the run record (JSON-ready)."""
        data = asdict(self)
        data.pop("artifacts_root")
        data.pop("label")
        data.pop("notify")
        data.pop("notify_events")
        data["tick"] = self.tick.isoformat() if self.tick else None
        return data


@dataclass(frozen=True)
class Submitted:
    """A run id and whether this call created the run (False: it already existed)."""

    run_id: str
    created: bool
    artifacts: str = ""
    """The run's directory or prefix URL, ``<root>/<run id>``."""


def new_run_id(now: datetime | None = None) -> str:
    """A manual run id: ``YYYYMMDDTHHMMSSZ-<6 hex>``."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def submit_run(ledger: Ledger, request: RunRequest, run_id: str | None = None) -> Submitted:
    """Record the run (first writer wins) and send its canvas; never sends a run twice.

    All or nothing for a new manual run (``run_id`` None): when recording or sending fails
    (a full Redis refuses writes with OutOfMemoryError) its record is deleted before the
    error goes on, so no run is left Pending for good; a message already sent finds no
    run and does nothing. A tick's run (``run_id`` given) stays recorded but unsent
    instead: the next tick's scheduled run, or the same backfill again, sends it.
    """
    manual = run_id is None
    run_id = run_id or new_run_id()
    n = len(request.alphas)
    root = normalize_root(request.artifacts_root)
    version = ledger.register_version()
    fields = {
        "id": run_id,
        "flow": flow.FLOW_NAME,
        "version": version,
        "digest": current_digest(),  # workers of other code never run its tasks (see worker/taskstart.py)
        "params": request.params(),
        "label": request.label or "",
        "queue": request.queue,
        "scheduled_start": request.tick.timestamp() if request.tick else "",
        "state": RunState.PENDING,
        "artifacts": root,
        "submitted": 0,
        "cancelled": 0,
        "notify": list(request.notify),  # read by the ledger's scripts: they queue the deliveries
        "notify_events": ",".join(request.notify_events),
    }
    created = ledger.create_run(run_id, fields, flow.task_keys(n))
    try:
        if created:
            ledger.count_version_run(version)
        ensure_submitted(ledger, run_id)
    except Exception:
        if created and manual:
            roll_back(ledger, run_id)
        raise
    return Submitted(run_id, created, run_location(root, run_id))


def roll_back(ledger: Ledger, run_id: str) -> None:
    """Delete the record of a run whose submission failed (best effort: the error that made it
    fail is the one to report)."""
    try:
        ledger.discard_run(run_id)
    except redis.RedisError:
        pass


def ensure_submitted(ledger: Ledger, run_id: str, lease: float | None = None) -> bool:
    """Send the canvas of a recorded run unless it was sent or another caller is sending it.

    The right to send is claimed atomically (:mod:`pipeline.ledger.claims`), so concurrent
    callers send one canvas; a run recorded but never sent (a crash in between) is sent
    by the next caller. Returns True if this call sent it.
    """
    lease = get_settings().submit_lease if lease is None else lease
    if not claim_submission(ledger, run_id, lease):
        return False
    try:
        run = ledger.get_run(run_id) or {}
        n = len(run.get("params", {}).get("alphas", []))
        send_canvas(ledger, run_id, n, run.get("queue") or DEFAULT_QUEUE)
    finally:
        release_submission(ledger, run_id)  # sent (submitted=1 guards now) or failed: free the claim
    return True


def send_canvas(ledger: Ledger, run_id: str, n_branches: int, queue: str, only: list[str] | None = None) -> None:
    """Send the run's canvas (or the part ``only`` names) and mark the run submitted."""
    canvas = build_canvas(run_id, n_branches, queue, only, app=app)
    if canvas is not None:
        send_recorded(ledger, run_id, canvas)
    ledger.update_run(run_id, submitted=1)


def wait_for_run(
    ledger: Ledger,
    run_id: str,
    on_progress: Callable[[int, int], None] | None = None,
    poll: float = 0.05,
    on_connection: Callable[[Exception | None], None] | None = None,
    stuck_after: float | None = None,
    timeout: float | None = None,
) -> str | None:
    """Block until the run has finished; return its end state (None when ``timeout`` seconds
    passed first). Reads only the run record.

    Raises :class:`~pipeline.runs.stuck.RunLost` when the record is gone (Redis lost its
    data) and, with ``stuck_after`` (``PIPELINE_STUCK_AFTER``), checked every
    ``STUCK_CHECK_EVERY`` seconds, :class:`~pipeline.runs.stuck.RunStuck` once the run is
    flagged stuck (the rule ``status`` uses), saying why.

    Waiting outlives a lost connection to Redis (a restart, a failover): once the client's
    own retries are spent it keeps trying every ``RECONNECT_EVERY`` seconds, calling
    ``on_connection(error)`` when the connection is lost and ``on_connection(None)`` when
    it is back. The run goes on in the workers meanwhile; only Ctrl-C stops the wait.
    Between two reads it waits up to ``poll`` seconds for the signal the task that ends
    the run sends (:meth:`Ledger.signal_finished`), so it returns at once when the run ends.
    ``on_progress(finished tasks, tasks in all)`` is called after every read of the record.
    """
    lost = False
    next_check = 0.0
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            return None
        try:
            state, done, total = ledger.progress(run_id)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if not lost and on_connection:
                on_connection(exc)
            lost = True
            time.sleep(RECONNECT_EVERY)
            continue
        if lost and on_connection:
            on_connection(None)
        lost = False
        if state is None:
            raise RunLost(run_id)
        if on_progress:
            on_progress(done, total)
        if state in FINISHED_RUN_STATES:
            return state
        if stuck_after is not None and time.monotonic() >= next_check:
            next_check = time.monotonic() + STUCK_CHECK_EVERY
            check_not_stuck(ledger, run_id, stuck_after)
        if deadline is not None:
            poll = max(0.01, min(poll, deadline - time.monotonic()))
        try:
            ledger.wait_signal(run_id, poll)  # wakes at once when the task ending the run signals
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # the next read notices the outage and reports it


def check_not_stuck(ledger: Ledger, run_id: str, stuck_after: float) -> None:
    """Raise :class:`RunStuck` (with its reason) if ``run_id`` is flagged stuck now."""
    try:
        run = ledger.get_run(run_id)
        reason = None if run is None else stuck_reason(ledger, run, stuck_after)
    except (redis.ConnectionError, redis.TimeoutError):
        return  # the next read of the progress notices the outage and reports it
    if reason:
        raise RunStuck(run_id, reason)


def run_results(ledger: Ledger, run_id: str) -> dict[str, float]:
    """``str(float(alpha))`` (or ``"linear"``) -> R^2 of every evaluated branch."""
    run = ledger.get_run(run_id) or {}
    alphas = run.get("params", {}).get("alphas", [])
    outputs = ledger.outputs(run_id, [flow.evaluate_key(i) for i in range(len(alphas))])
    return {
        alpha_name(alpha): outputs[flow.evaluate_key(i)]["score"]
        for i, alpha in enumerate(alphas)
        if flow.evaluate_key(i) in outputs
    }
