"""Creating, submitting and waiting for runs: what the CLI's commands call."""
from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pipeline import flow, versioning
from pipeline.canvas import build_canvas
from pipeline.celery_app import app
from pipeline.fanout import compact
from pipeline.ledger import FINISHED_RUN_STATES, Ledger
from pipeline.settings import DEFAULT_QUEUE
from pipeline.naming import DEFAULT_N_SAMPLES, alpha_name, tick_stamp


@dataclass(frozen=True)
class RunRequest:
    """Everything a run is parameterised by (validated before it gets here)."""

    alphas: list[float | None]
    """Alphas of the sweep; ``[None]`` is the linear run."""
    artifacts_root: Path
    n_samples: int = DEFAULT_N_SAMPLES
    sleep: float = 0.0
    retries: int = 0
    retry_delay: float = 0.0
    fail_rate: float = 0.0
    label: str | None = None
    tick: datetime | None = None

    @property
    def queue(self) -> str:
        """The queue every task of the run is routed to."""
        return self.label or DEFAULT_QUEUE

    def params(self) -> dict:
        """The parameters as stored in the run record (JSON-ready)."""
        data = asdict(self)
        data.pop("artifacts_root")
        data.pop("label")
        data["tick"] = self.tick.isoformat() if self.tick else None
        return data


@dataclass(frozen=True)
class Submitted:
    """A run id and whether this call created the run (False: it already existed)."""

    run_id: str
    created: bool
    artifacts: Path = field(default=Path("."))


def new_run_id(now: datetime | None = None) -> str:
    """A manual run id: ``YYYYMMDDTHHMMSSZ-<6 hex>``."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def tick_run_id(tick: datetime) -> str:
    """The run id of a scheduled tick: ``tick-YYYYMMDDHHmmss``."""
    return f"tick-{tick_stamp(tick)}"


def submit_run(ledger: Ledger, request: RunRequest, run_id: str | None = None) -> Submitted:
    """Record the run (first writer wins) and send its canvas; never sends a run twice."""
    run_id = run_id or new_run_id()
    n = len(request.alphas)
    artifacts = request.artifacts_root.resolve() / run_id
    version = versioning.register(ledger.r)["version"]
    fields = {
        "id": run_id,
        "flow": flow.FLOW_NAME,
        "version": version,
        "params": request.params(),
        "label": request.label or "",
        "queue": request.queue,
        "scheduled_start": request.tick.timestamp() if request.tick else "",
        "state": "Pending",
        "artifacts": str(request.artifacts_root.resolve()),
        "submitted": 0,
        "cancelled": 0,
    }
    created = ledger.create_run(run_id, fields, flow.task_keys(n))
    if created:
        versioning.count_run(ledger.r, version)
    run = ledger.get_run(run_id)
    if run and run.get("submitted") != "1":
        send_canvas(ledger, run_id, n, run.get("queue") or request.queue)
    return Submitted(run_id, created, artifacts)


def send_canvas(ledger: Ledger, run_id: str, n_branches: int, queue: str, only: list[str] | None = None) -> None:
    """Send the run's canvas (or the part ``only`` names) and mark the run submitted."""
    canvas = compact(build_canvas(run_id, n_branches, queue, only, app=app), app)
    if canvas is not None:
        canvas.apply_async()
    ledger.update_run(run_id, submitted=1)


def wait_for_run(
    ledger: Ledger,
    run_id: str,
    on_progress: Callable[[int, int], None] | None = None,
    poll: float = 0.05,
) -> str:
    """Block until the run has finished; return its end state. Reads only the run record.

    Between two reads it waits up to ``poll`` seconds for the signal the task that ends
    the run sends (:meth:`Ledger.signal_finished`), so it returns at once when the run ends.
    """
    last = -1
    while True:
        state, done, total = ledger.progress(run_id)
        if state is None:
            raise KeyError(run_id)
        if on_progress and done != last:
            on_progress(done, total)
            last = done
        if state in FINISHED_RUN_STATES:
            return state
        ledger.wait_signal(run_id, poll)


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
