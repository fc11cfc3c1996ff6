"""Who may send a run's canvas: an atomic claim, so two attempts never both send it.

A run is recorded first (first writer wins), then one attempt claims the submission by
setting the run's ``submitting`` field to its claim time, sends the canvas, and sets
``submitted=1``. A second attempt that finds a fresh claim leaves the run alone; one
that finds a run recorded but never claimed, or a claim older than the lease (the
claimer crashed before sending), takes over. So a crash between record and send is
healed by the next attempt, and concurrent attempts send one canvas between them.
"""
from __future__ import annotations

import time

from pipeline.ledger.records import Ledger

CLAIM = """
-- KEYS[1]: run hash. ARGV: now, lease seconds. Returns 1 if this caller may send the canvas.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'submitted') == '1' then return 0 end
local since = tonumber(redis.call('HGET', KEYS[1], 'submitting') or '')
if since and tonumber(ARGV[1]) - since < tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'submitting', ARGV[1])
return 1
"""


def claim_submission(ledger: Ledger, run_id: str, lease: float, now: float | None = None) -> bool:
    """True if this caller now holds the right to send ``run_id``'s canvas.

    False when the run is missing, already submitted, or claimed less than ``lease``
    seconds ago by someone else.
    """
    now = time.time() if now is None else now
    script = ledger.r.register_script(CLAIM)
    return bool(script(keys=[ledger.run_key(run_id)], args=[repr(now), repr(float(lease))]))


def release_submission(ledger: Ledger, run_id: str) -> None:
    """Drop the claim once the canvas is sent (``submitted=1`` guards from then on) or its send
    failed (so the next attempt need not wait for the lease)."""
    ledger.r.hdel(ledger.run_key(run_id), "submitting")


def needs_submission(ledger: Ledger, run_id: str) -> bool:
    """True if ``run_id`` is recorded but its canvas was never sent."""
    submitted = ledger.r.hget(ledger.run_key(run_id), "submitted")
    return submitted is not None and submitted != "1"
