"""``schedule pause|resume|show``: the per-minute schedule's switch, from the terminal.

The same switch as the one on the web page ``/schedule``: while paused, beat's ticks
create no runs (see :mod:`pipeline.ledger.schedule_switch`).
"""
from __future__ import annotations

import click

from pipeline.cli.common import connect_or_exit
from pipeline.settings import get_settings


@click.group()
def schedule() -> None:
    """Pause, resume or show the per-minute schedule (paused: ticks create no runs)."""


@schedule.command()
def pause() -> None:
    """Pause the schedule: beat's ticks create no runs until 'schedule resume'."""
    from pipeline.ledger import schedule_switch

    conn = connect_or_exit(get_settings())
    changed = schedule_switch.pause(conn.ledger)
    click.echo("schedule paused: ticks create no runs" if changed else "the schedule was already paused")


@schedule.command()
def resume() -> None:
    """Resume the schedule: the next tick creates its run again."""
    from pipeline.ledger import schedule_switch

    conn = connect_or_exit(get_settings())
    changed = schedule_switch.resume(conn.ledger)
    click.echo("schedule resumed" if changed else "the schedule was not paused")


@schedule.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (what /api/schedule returns).")
def show(as_json: bool) -> None:
    """Show the schedule: paused or not, its alphas and label, beat alive, next and last ticks."""
    from pipeline.schedule.status import schedule_document, schedule_text

    settings = get_settings()
    conn = connect_or_exit(settings)
    doc = schedule_document(conn.ledger, settings)
    if as_json:
        from pipeline.cli.report import print_json

        print_json(doc)
    else:
        click.echo(schedule_text(doc))
