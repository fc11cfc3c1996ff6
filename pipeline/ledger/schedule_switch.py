"""The schedule's switch and its recent ticks, in the run record's Redis.

``pipeline:schedule:paused`` holds ``{"since": unix time}`` while the schedule is paused
(absent: running); every tick the scheduled-run task handles is pushed onto
``pipeline:schedule:ticks`` (newest first, the last :data:`TICKS_KEPT`), with the run it
made or ``paused``. Beat keeps sending ticks while paused; the task checks the switch and
creates no run, so pausing needs no restart of beat and a paused tick is still seen
(which also tells whether a beat is alive).
"""
from __future__ import annotations

import json
import time
from typing import Any

from pipeline.ledger.records import Ledger
from pipeline.settings import KEY_PREFIX

PAUSED_KEY = f"{KEY_PREFIX}:schedule:paused"
TICKS_KEY = f"{KEY_PREFIX}:schedule:ticks"

TICKS_KEPT = 50
"""Recent ticks remembered."""


def pause(ledger: Ledger, now: float | None = None) -> bool:
    """Pause the schedule; False if it already was."""
    return bool(ledger.r.set(PAUSED_KEY, json.dumps({"since": now or time.time()}), nx=True))


def resume(ledger: Ledger) -> bool:
    """Resume the schedule; False if it was not paused."""
    return bool(ledger.r.delete(PAUSED_KEY))


def paused_since(ledger: Ledger) -> float | None:
    """When the schedule was paused (unix time), or None while it runs."""
    raw = ledger.r.get(PAUSED_KEY)
    return float(json.loads(raw)["since"]) if raw else None


def record_tick(ledger: Ledger, tick: str, outcome: dict[str, Any], now: float | None = None) -> None:
    """Remember that tick ``tick`` (ISO) was handled: ``outcome`` says the run id, or paused."""
    entry = json.dumps({"tick": tick, "handled": now or time.time(), **outcome})
    pipe = ledger.r.pipeline(transaction=False)
    pipe.lpush(TICKS_KEY, entry)
    pipe.ltrim(TICKS_KEY, 0, TICKS_KEPT - 1)
    pipe.execute()


def recent_ticks(ledger: Ledger, count: int = 10) -> list[dict[str, Any]]:
    """The last ``count`` ticks handled, newest first."""
    return [json.loads(raw) for raw in ledger.r.lrange(TICKS_KEY, 0, count - 1)]
