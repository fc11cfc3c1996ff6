"""``notifications``: the deliveries of a run's notifications (or of all runs), and how each went."""
from __future__ import annotations

import click

from pipeline import validation
from pipeline.cli.common import connect_or_exit, existing_run
from pipeline.settings import get_settings


@click.command()
@click.argument("run_id", required=False)
@click.option("--limit", type=int, default=50, show_default=True, help="How many deliveries without RUN_ID.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of the table.")
def notifications(run_id: str | None, limit: int, as_json: bool) -> None:
    """List notification deliveries: event, destination (secrets redacted), status, attempts, last error.

    With RUN_ID, that run's, oldest first; without, the newest of all runs. Status is
    pending (to be tried, or retried after a failure), delivered or failed (given up).
    """
    from pipeline.cli.report import print_json
    from pipeline.notify.report import deliveries_table, delivery_document

    if run_id is not None:
        validation.check_run_id_input(run_id)
    conn = connect_or_exit(get_settings())
    if run_id is not None:
        existing_run(conn, run_id)
    docs = [delivery_document(row) for row in conn.ledger.notifications.deliveries(run_id, limit)]
    if as_json:
        print_json(docs)
    else:
        click.echo(deliveries_table(docs, with_run=run_id is None))
