"""The per-minute schedule: beat's scheduler that stamps each send with its tick
(scheduler), tick arithmetic (ticks), the run a tick makes (tick_runs, tick_task),
runs for past ticks (backfill) and how beat is started (beat).
"""
