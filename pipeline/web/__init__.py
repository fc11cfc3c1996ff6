"""What runs in the browser, inside Flower's process: Flower started with our settings and
links (flower), our handlers and templates added to its app (server, routes, base), the
run pages (runs: the list; run_view, schematic, gantt: one run; actions: Restart and
Cancel), the flow's versions and Quick Run form (flows), the labels and their workers
(labels), and the schedule with its pause switch and backfill form (schedule). Every page
has its JSON under ``/api/``, the same documents as the CLI's ``--json``.
"""
