"""``runs``, ``status``, ``logs``, ``flows`` and ``prune``: read (and tidy) the run records."""
from __future__ import annotations

import sys

import click

from pipeline import validation
from pipeline.cli.common import EXIT_INTERRUPTED, connect_or_exit, existing_run, fail
from pipeline.settings import get_settings


@click.command()
@click.option("--limit", type=int, default=20, show_default=True, help="How many runs to show.")
@click.option("--state", default=None, help="Only runs in this state: Pending, Running, Success, Failed or Cancelled.")
@click.option("--label", default=None, help="Only runs submitted with this --label.")
@click.option("--version", "flow_version", type=int, default=None, help="Only runs of this flow version.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of the table.")
def runs(limit: int, state: str | None, label: str | None, flow_version: int | None, as_json: bool) -> None:
    """List recent runs, newest first: id, flow version, state, duration, label.

    The filters combine: `runs --state Failed --label gpu --limit 5` lists the five newest
    failed runs of label gpu (what the web page /runs?state=Failed&label=gpu shows).
    """
    from pipeline.cli.report import print_json
    from pipeline.ledger.listing import RunFilter, page_of_runs
    from pipeline.ledger.status import run_summary
    from pipeline.ledger.values import RUN_STATES
    from pipeline.cli.views import runs_table

    if limit < 1:
        fail(f"--limit {limit} must be at least 1")
    if state is not None:
        spelled = {s.lower(): s for s in RUN_STATES}
        if state.lower() not in spelled:
            fail(f"unknown state {state!r}: one of {', '.join(RUN_STATES)}")
        state = spelled[state.lower()]
    if label is not None:
        validation.check_label(label)
    settings = get_settings()
    conn = connect_or_exit(settings)
    conn.ledger.forget_expired()
    records, _more = page_of_runs(conn.ledger, 0, limit, RunFilter(state=state, label=label, version=flow_version))
    docs = [run_summary(run, settings.stuck_after) for run in records]
    if as_json:
        print_json(docs)
    elif not docs and (state or label or flow_version is not None):
        click.echo("no runs match those filters")
    else:
        click.echo(runs_table(docs))


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def status(run_id: str, as_json: bool) -> None:
    """Show a run: every task with state, attempts and duration, and a timeline of the run.

    The run is flagged stuck when it is Pending or Running and nothing has happened for
    PIPELINE_STUCK_AFTER seconds (plus the run's own --sleep and --retry-delay).
    """
    import time

    from pipeline.definition import flow
    from pipeline.cli.report import print_json
    from pipeline.ledger.status import n_branches, status_document
    from pipeline.cli.views import status_text

    validation.check_run_id_input(run_id)
    settings = get_settings()
    conn = connect_or_exit(settings)
    run = existing_run(conn, run_id)
    now = time.time()
    rows = conn.ledger.tasks(run_id, flow.task_keys(n_branches(run)))
    doc = status_document(run, rows, settings.stuck_after, now)
    if as_json:
        print_json(doc)
    else:
        click.echo(status_text(doc, now))


@click.command()
@click.argument("run_id")
@click.option("--task", "task_key", default=None, help="Only this task's lines (e.g. 'train_model[0]').")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the run has finished.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: an array of {time, task, line}; with --follow, one object per line.")
def logs(run_id: str, task_key: str | None, follow: bool, as_json: bool) -> None:
    """Print what a run's stages printed, as '<ISO time> <task key> <line>'."""
    import json

    from pipeline.definition import flow

    from pipeline.ledger import logs as logview
    from pipeline.cli.report import print_json
    from pipeline.ledger.status import n_branches

    validation.check_run_id_input(run_id)
    settings = get_settings()
    conn = connect_or_exit(settings)
    run = existing_run(conn, run_id)
    if task_key is not None:
        try:
            flow.parse_key(task_key, n_branches(run))
        except ValueError as exc:
            fail(f"{exc} in run {run_id}")
    if follow:
        emit = (lambda line: click.echo(json.dumps(line))) if as_json else (
            lambda line: click.echo(logview.format_line(line)))
        try:
            state = logview.follow(conn.ledger, run_id, emit, task=task_key, stuck_after=settings.stuck_after)
        except KeyboardInterrupt:
            sys.exit(EXIT_INTERRUPTED)
        if state == logview.STUCK:
            click.echo(f"run {run_id} is stuck (no progress for a while): python cli.py status {run_id}", err=True)
        elif state is None:
            click.echo(f"run {run_id} is gone (expired or pruned)", err=True)
        return
    lines = logview.read_all(conn.ledger, run_id, task=task_key)
    if as_json:
        print_json(list(lines))
    else:
        for line in lines:
            click.echo(logview.format_line(line))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of the table.")
def flows(as_json: bool) -> None:
    """List flow versions with first-seen time, run count and the live workers running each
    ('*' marks this code's version).

    The version grows when the parsed code of the stages, the flow's shape or the canvas
    builder changes; comments, formatting and docstrings do not count. A run's tasks run
    only on workers of the version it was submitted under.
    """
    from pipeline.cli.report import print_json
    from pipeline.cli.views import flows_table
    from pipeline.ledger.versions import version_documents

    conn = connect_or_exit(get_settings())
    versions = version_documents(conn.ledger.version_table())
    if as_json:
        print_json(versions)
    else:
        click.echo(flows_table(versions))


@click.command()
@click.option("--older-than", type=float, default=None,
              help="Remove runs created more than this many seconds ago (default: PIPELINE_RETENTION_SECONDS).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def prune(older_than: float | None, as_json: bool) -> None:
    """Remove old runs now: their records, task states, logs and index entries.

    Artifact files are left alone, and so are runs still Pending or Running (unless stuck).
    """
    import math

    from pipeline.ledger.values import iso
    from pipeline.cli.report import plural, print_json
    from pipeline.ledger.retention import prune as prune_runs

    settings = get_settings()
    if older_than is None:
        older_than = settings.retention_seconds
    if not math.isfinite(older_than) or older_than < 0:
        fail(f"--older-than {older_than} must be a number of seconds, 0 or more")
    conn = connect_or_exit(settings)
    result = prune_runs(conn.ledger, older_than, settings.stuck_after)
    if as_json:
        print_json({"pruned": result.pruned, "cutoff": iso(result.cutoff), "kept_active": result.kept_active,
                    "stale_index_entries": result.stale_index})
    else:
        click.echo(f"pruned {plural(result.pruned, 'run')} created before {iso(result.cutoff)}")
        if result.kept_active:
            click.echo(f"kept {plural(len(result.kept_active), 'run')} still in progress: {' '.join(result.kept_active)}")
