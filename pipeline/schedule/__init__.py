"""The per-minute schedule: beat's scheduler that stamps each send with its tick
(scheduler), the aligned test interval (every), tick arithmetic (ticks), the run a tick
makes (tick_runs, tick_task), runs for past ticks (backfill) and beat's configuration,
part of the app's, and start (beat).
"""
