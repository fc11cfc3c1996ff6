"""The CLI's commands, grouped by what they act on (submit, inspection, control,
services; ``cli.py`` assembles them), with their shared helpers (common) and the
terminal rendering of results and status (report, views).
"""
