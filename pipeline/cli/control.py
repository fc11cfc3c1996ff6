"""``restart`` and ``cancel``: act on a run that exists."""
from __future__ import annotations

import click

from pipeline import validation
from pipeline.cli.common import connect_or_exit, existing_run, fail, wait_and_report, warn_if_unconsumed
from pipeline.cli.report import plural
from pipeline.settings import DEFAULT_QUEUE, get_settings


@click.command()
@click.argument("run_id")
@click.option("--from", "from_key", default=None,
              help="Also run this task (e.g. 'preprocess_dataset') and everything downstream of it again, "
                   "even if they succeeded: rewrites their files.")
@click.option("--fail-rate", type=float, default=None,
              help="New probability that a train_model attempt raises, for the tasks run again (recorded in the run).")
@click.option("--retries", type=int, default=None, help="New retries of a failing stage, for the tasks run again.")
@click.option("--retry-delay", type=float, default=None, help="New seconds between retries, for the tasks run again.")
@click.option("--refresh-cache", is_flag=True,
              help="Compute the tasks run again instead of serving them from the cache, and store their results.")
@click.option("--no-wait", is_flag=True, help="Print the run id and return at once.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def restart(run_id: str, from_key: str | None, fail_rate: float | None, retries: int | None,
            retry_delay: float | None, refresh_cache: bool, no_wait: bool, as_json: bool) -> None:
    """Run a run's Failed, TriggerFailed and Cancelled tasks again (every unfinished one if stuck).

    Same run id; succeeded tasks do not run again (unless --from names them or a task
    upstream of them), the others read their inputs from the run's record. Refused while
    the run is running, or when every task succeeded and --from is not given.
    --fail-rate, --retries and --retry-delay replace those parameters in the run's record
    for the tasks that run again (`status RUN_ID --json` shows them under params). A run
    submitted with --cache serves the tasks run again from the cache where an entry
    matches; --refresh-cache computes them (the way to rewrite a file with --from).
    """
    from pipeline.runs.restart import RestartRefused, restart_run

    validation.check_run_id_input(run_id)
    settings = get_settings()
    overrides = validation.restart_overrides(fail_rate, retries, retry_delay, settings.visibility_timeout,
                                             refresh_cache=refresh_cache)
    conn = connect_or_exit(settings)
    run = existing_run(conn, run_id)
    try:
        done = restart_run(conn.ledger, run_id, settings.stuck_after, from_key=from_key, overrides=overrides)
    except RestartRefused as exc:
        fail(str(exc))
    warn_if_unconsumed(conn, run.get("queue") or DEFAULT_QUEUE, run.get("digest") or None)  # it keeps its version
    if no_wait:
        if as_json:
            from pipeline.cli.report import print_json

            print_json({"run_id": run_id, "state": done.state, "restarted": done.keys, "stuck": done.stuck,
                        "overrides": done.overrides or {}})
        else:
            click.echo(run_id)
        return
    if not as_json:
        why = f"from {from_key}" if from_key else "stuck run" if done.stuck else "failed tasks"
        changed = "".join(f", {name} {value}" for name, value in (done.overrides or {}).items())
        click.echo(f"run {run_id} restarted ({why}): {plural(len(done.keys), 'task')} run again{changed}", err=True)
    wait_and_report(conn, run_id, as_json)


@click.command()
@click.argument("run_id")
def cancel(run_id: str) -> None:
    """Cancel a run: revoke its queued tasks, end running ones, state Cancelled (restartable).

    Running tasks are terminated on prefork workers; a threads pool cannot kill a thread,
    so there they finish their current stage and their result is ignored.
    """
    from pipeline.runs.cancel import CancelRefused, cancel_run

    validation.check_run_id_input(run_id)
    conn = connect_or_exit(get_settings())
    existing_run(conn, run_id)
    try:
        done = cancel_run(conn.ledger, run_id)
    except CancelRefused as exc:
        fail(str(exc))
    click.echo(f"run {run_id} cancelled: {plural(len(done.stopped), 'task')} stopped; "
               f"python cli.py restart {run_id} runs them again")
