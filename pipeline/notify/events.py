"""The message of one event: a Standard Webhooks JSON payload, and its text for chat and mail.

Built once, at a delivery's first attempt, from the run record as it is then (every retry
sends the same body). It says the run id, the flow and its version, the state, the
duration, what failed (:func:`pipeline.ledger.status.failure_summary`: task keys, alphas,
each error's last line), and links to the run's page when ``PIPELINE_PUBLIC_URL`` is set.
"""
from __future__ import annotations

from typing import Any

from pipeline.definition import flow
from pipeline.ledger.records import Ledger
from pipeline.ledger.status import duration, failure_summary, format_seconds, n_branches, run_alphas
from pipeline.ledger.values import iso
from pipeline.settings import Settings

SUMMARY = {
    "run.succeeded": "succeeded",
    "run.failed": "failed",
    "run.cancelled": "was cancelled",
    "run.stuck": "is stuck",
    "run.recovered": "was brought back (restart or reclaim)",
}
"""What the text of each event says happened."""


def run_page(settings: Settings, run_id: str) -> str | None:
    """The run's web page, when ``PIPELINE_PUBLIC_URL`` says where the pages are."""
    return f"{settings.public_url}/runs/{run_id}" if settings.public_url else None


def build_event(ledger: Ledger, delivery: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The JSON payload (``type``, ``timestamp``, ``data``) of ``delivery``'s event."""
    run_id = delivery["run_id"]
    run = ledger.get_run(run_id) or {}
    data: dict[str, Any] = {
        "event_id": delivery["event_id"],
        "run_id": run_id,
        "flow": run.get("flow"),
        "version": int(run["version"]) if run.get("version") else None,
        "state": run.get("state"),
        "duration": duration(run.get("started"), run.get("ended")),
        "url": run_page(settings, run_id),
    }
    if run:
        alphas = run_alphas(run)
        data.update(failure_summary(ledger.tasks(run_id, flow.task_keys(n_branches(run))), alphas))
    if delivery["event"] == "run.stuck":
        from pipeline.runs.stuck import stuck_reason

        data["reason"] = stuck_reason(ledger, run, settings.stuck_after) if run else None
    return {"type": delivery["event"], "timestamp": iso(delivery["created"]), "data": data}


def event_text(event: dict[str, Any]) -> tuple[str, str]:
    """``(title, body)`` of ``event`` for chat and mail (Apprise)."""
    data = event["data"]
    version = f" v{data['version']}" if data.get("version") else ""
    title = f"run {data['run_id']} {SUMMARY.get(event['type'], event['type'])}"
    lines = [f"{data.get('flow') or 'flow'}{version}, state {data.get('state')}, "
             f"duration {format_seconds(data.get('duration'))}"]
    for failed in data.get("failed") or []:
        alpha = f" (alpha {failed['alpha']})" if failed.get("alpha") else ""
        lines.append(f"failed: {failed['key']}{alpha}: {failed.get('error') or 'no error recorded'}")
    if data.get("blocked"):
        lines.append(f"{data['blocked']} tasks blocked by a failed upstream task")
    if data.get("reason"):
        lines.append(f"stuck: {data['reason']}")
    if data.get("url"):
        lines.append(data["url"])
    return title, "\n".join(lines)
