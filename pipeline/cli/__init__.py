"""The CLI's commands, grouped by what they act on: submit (run, sweep, wait), control
(restart, cancel), inspection (runs, status, logs, flows, prune), services (worker, stop,
flower, beat, backfill), schedule (pause, resume, show), notifications and cache (ls,
prune); ``main`` assembles them into one click group (``cli.py`` and the ``pipeline``
command run it). Shared helpers and exit codes live in common; the terminal rendering
of results, failures and status in report and views, the waiting bar in progress.
"""
