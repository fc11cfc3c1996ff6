"""What ``schedule show --json`` prints and ``/schedule`` shows: the per-minute schedule's
entry, whether it is paused, whether a beat is alive, the next tick, the last ticks and their runs.

A beat counts as alive when the scheduled-run task handled a tick within two steps (plus
:data:`BEAT_GRACE` seconds): beat itself writes nothing to Redis, its ticks do, paused or not.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from pipeline.ledger import schedule_switch
from pipeline.ledger.records import Ledger
from pipeline.ledger.values import iso
from pipeline.schedule.ticks import ceil_tick, iso_tick
from pipeline.settings import Settings

BEAT_GRACE = 15.0
"""Seconds of delivery delay allowed on top of two steps before a beat counts as gone."""


def schedule_document(ledger: Ledger, settings: Settings, now: float | None = None, count: int = 10) -> dict[str, Any]:
    """The schedule as this process's settings define it (PIPELINE_BEAT_INTERVAL, PIPELINE_SCHEDULE_LABEL)."""
    import beat_schedule

    now = time.time() if now is None else now
    entry = beat_schedule.build_schedule(settings)[beat_schedule.ENTRY_NAME]
    step = float(entry["kwargs"]["step"])
    since = schedule_switch.paused_since(ledger)
    ticks = schedule_switch.recent_ticks(ledger, count)
    for tick in ticks:
        run = ledger.get_run(tick["run_id"]) if tick.get("run_id") else None
        tick["state"] = run.get("state") if run else None
        tick["handled"] = iso(tick.get("handled"))
    last = schedule_switch.recent_ticks(ledger, 1)
    last_seen = last[0]["handled"] if last else None
    return {
        "entry": beat_schedule.ENTRY_NAME,
        "every": "*/1 * * * * (crontab)" if settings.beat_interval <= 0 else f"{step:g} s (PIPELINE_BEAT_INTERVAL)",
        "alphas": entry["kwargs"]["alphas"],
        "n_samples": entry["kwargs"]["n_samples"],
        "label": entry["kwargs"]["label"],
        "paused": since is not None,
        "paused_since": iso(since),
        "beat_alive": last_seen is not None and now - float(last_seen) <= 2 * step + BEAT_GRACE,
        "last_tick_seen": iso(last_seen),
        "next_tick": iso_tick(ceil_tick(datetime.fromtimestamp(now, tz=timezone.utc), step)),
        "ticks": ticks,
    }


def schedule_text(doc: dict[str, Any]) -> str:
    """``schedule show``'s lines."""
    state = f"PAUSED since {doc['paused_since']} (ticks create no runs)" if doc["paused"] else "running"
    beat = f"alive (last tick {doc['last_tick_seen']})" if doc["beat_alive"] else (
        f"not seen since {doc['last_tick_seen']}" if doc["last_tick_seen"] else "no tick seen yet (start one: python cli.py beat)")
    lines = [f"schedule {doc['entry']}: {state}",
             f"every {doc['every']}; alphas {' '.join(str(a) for a in doc['alphas'])}; rows {doc['n_samples']}; "
             f"label {doc['label'] or '-'}",
             f"beat: {beat}; next tick {doc['next_tick']}"]
    for tick in doc["ticks"]:
        what = "paused: no run" if tick.get("paused") else f"{tick['run_id']} {tick.get('state') or '-'}"
        lines.append(f"  {tick['tick']}  {what}")
    return "\n".join(lines)
