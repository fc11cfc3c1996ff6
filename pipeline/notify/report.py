"""Deliveries as ``notifications`` and the run page show them: secrets redacted, times ISO."""
from __future__ import annotations

from typing import Any

from pipeline.ledger.values import iso
from pipeline.notify.destinations import redact


def delivery_document(row: dict[str, Any]) -> dict[str, Any]:
    """One delivery record (:func:`pipeline.ledger.notifications.deliveries`) as ``--json`` prints it."""
    return {
        "id": row.get("id"),
        "event": row.get("event"),
        "event_id": row.get("event_id"),
        "run_id": row.get("run_id"),
        "destination": redact(row.get("url") or ""),
        "status": row.get("status"),
        "attempts": int(row.get("attempts") or 0),
        "last_error": row.get("last_error") or None,
        "created": iso(row.get("created")),
        "last_attempt": iso(row.get("last_attempt")),
        "next_attempt": iso(row.get("next")) if row.get("status") == "pending" else None,
    }


def deliveries_table(docs: list[dict[str, Any]], with_run: bool) -> str:
    """The text table of ``notifications``: one delivery a line."""
    if not docs:
        return "no notifications"
    head = ["EVENT", "STATUS", "ATTEMPTS", "DESTINATION", "LAST ERROR"]
    rows = [[d["event"] or "", d["status"] or "", str(d["attempts"]), d["destination"], d["last_error"] or "-"]
            for d in docs]
    if with_run:
        head.insert(0, "RUN")
        for d, row in zip(docs, rows):
            row.insert(0, d["run_id"] or "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]) for r in [head, *rows])
