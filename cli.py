#!/usr/bin/env python
"""Command line of the pipeline: submit runs and sweeps, wait for them, run workers.

With CELERY_BROKER_URL unset, commands use an embedded Redis and worker that they start
themselves; with it set, they only submit to and read from that deployment.
"""
from __future__ import annotations

import os
import sys

import click

from pipeline import validation
from pipeline.redis_conn import BrokerUnreachable
from pipeline.settings import get_settings
from pipeline.validation import BadInput

DEFAULT_ALPHAS = ("1.0", "0.1", "0.01", "0.001", "0.0001", "0.00001")
"""The sweep's alphas when ``--alphas`` is not given (the tutorial's)."""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class VariadicOptions(click.Command):
    """A command whose ``--alphas`` takes every word up to the next ``--option``.

    So ``--alphas 1.0 0.1``, ``--alphas 1.0,0.1`` and ``--alphas -0.5`` all reach the
    alpha parser (which names -0.5 as negative) instead of click's option parser.
    """

    variadic = ("--alphas",)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(args):
            token = args[i]
            if token in self.variadic:
                j = i + 1
                while j < len(args) and not args[j].startswith("--"):
                    j += 1
                out += [token, " ".join(args[i + 1 : j])]
                i = j
            else:
                out.append(token)
                i += 1
        return super().parse_args(ctx, out)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print one error line on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def run_options(func):
    """Options shared by ``run`` and ``sweep``."""
    options = [
        click.option("--n-samples", type=int, default=100, show_default=True, help="Rows in the generated dataset."),
        click.option("--sleep", type=float, default=0.0, show_default=True, help="Seconds every stage sleeps."),
        click.option("--retries", type=int, default=0, show_default=True, help="Retries of a failing stage."),
        click.option("--retry-delay", type=float, default=0.0, show_default=True, help="Seconds between retries."),
        click.option("--fail-rate", type=float, default=0.0, show_default=True,
                     help="Probability that a train_model attempt raises (failure injection)."),
        click.option("--label", default=None, help="Route every task to this label's queue."),
        click.option("--artifacts", default=None,
                     help="Artifacts root: a path or an fsspec URL like s3://bucket/prefix "
                          "(default: $PIPELINE_ARTIFACTS or ./artifacts)."),
        click.option("--no-wait", is_flag=True, help="Print the run id and return at once."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table."),
        click.option("--local", is_flag=True, help="Run everything in this process, no broker (debug path)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run the tutorial's scikit-learn pipeline on Celery workers.

    \b
    download_dataset -> preprocess_dataset -> train_model[i] -> evaluate_model[i] -> cleanup_file[j]
    """


@cli.command(cls=VariadicOptions)
@click.option("--alpha", type=str, default=None, help="Ridge alpha; without it, LinearRegression.")
@run_options
def run(alpha: str | None, **options) -> None:
    """Run the pipeline once: LinearRegression, or Ridge with --alpha."""
    alphas = [None] if alpha is None else validation.parse_alphas([alpha])
    if len(alphas) != 1:
        fail(f"--alpha takes one value, got {alpha!r}")
    submit_and_report(alphas, **options)


@cli.command(cls=VariadicOptions)
@click.option("--alphas", "alphas_text", default=" ".join(DEFAULT_ALPHAS), show_default=True,
              help="Ridge alphas, space- or comma-separated; one branch each.")
@run_options
def sweep(alphas_text: str, **options) -> None:
    """Train and evaluate one Ridge model per alpha, in parallel, then clean up."""
    submit_and_report(validation.parse_alphas([alphas_text]), **options)


def submit_and_report(alphas, *, n_samples, sleep, retries, retry_delay, fail_rate, label, artifacts,
                      no_wait, as_json, local) -> None:
    """Validate, submit (or run locally), wait with progress, print the table or JSON, exit."""
    settings = get_settings()
    validation.check_samples(n_samples)
    validation.check_seconds("sleep", sleep, settings.visibility_timeout)
    validation.check_seconds("retry delay", retry_delay, settings.visibility_timeout)
    validation.check_retries(retries)
    validation.check_rate(fail_rate)
    if label is not None:
        validation.check_label(label)
    root = validation.check_artifacts_root(artifacts or settings.artifacts_root, settings.artifacts_allowed)
    conn = None if local else connect_or_exit(settings)  # before the heavier imports: fast errors
    from pipeline.runs import RunRequest, new_run_id
    from pipeline.store import run_location

    request = RunRequest(
        alphas=alphas, artifacts_root=root, n_samples=n_samples,
        sleep=sleep, retries=retries, retry_delay=retry_delay, fail_rate=fail_rate, label=label,
    )
    if local:
        from pipeline.local import run_local
        from pipeline.report import print_json, results_table

        run_id = new_run_id()
        results = run_local(request, run_id)
        directory = run_location(request.artifacts_root, run_id)
        if as_json:
            print_json({"run_id": run_id, "state": "Success", "artifacts": directory, "results": results})
        else:
            click.echo(f"run {run_id} (local): Success, artifacts in {directory}")
            click.echo(results_table(results))
        return
    from pipeline.runs import submit_run

    submitted = submit_run(conn.ledger, request)
    warn_if_unconsumed(conn, request.queue)
    if no_wait:
        if as_json:
            from pipeline.report import print_json

            print_json({"run_id": submitted.run_id, "state": "Pending", "artifacts": submitted.artifacts})
        else:
            click.echo(submitted.run_id)
        return
    if not as_json:
        from pipeline.flower import where_to_look

        click.echo(f"run {submitted.run_id} submitted; artifacts in {submitted.artifacts}", err=True)
        click.echo(where_to_look(settings, submitted.run_id), err=True)
    wait_and_report(conn, submitted.run_id, as_json)


def connect_or_exit(settings):
    """Connect to the broker (or embedded stack); exit 2 with one line if unreachable."""
    from pipeline.connect import connect

    try:
        return connect(settings, announce=lambda msg: click.echo(msg, err=True))
    except BrokerUnreachable as exc:
        fail(str(exc))


def wait_and_report(conn, run_id: str, as_json: bool) -> None:
    """Wait for ``run_id`` with a progress bar, print its results, exit 0/1 (130 on Ctrl-C)."""
    from pipeline.report import print_json, progress_bar, results_table, run_document
    from pipeline.runs import run_results, wait_for_run
    from pipeline.store import run_location

    try:
        with progress_bar(run_id, enabled=not as_json and sys.stderr.isatty()) as update:
            state = wait_for_run(conn.ledger, run_id, update, on_connection=report_connection)
    except KeyboardInterrupt:
        click.echo(f"\nstopped waiting; run {run_id} goes on: python cli.py wait {run_id}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    run = conn.ledger.get_run(run_id)
    results = run_results(conn.ledger, run_id)
    artifacts = run_location(run["artifacts"], run_id)
    if as_json:
        print_json(run_document(run, results, artifacts))
    else:
        click.echo(f"run {run_id}: {state}; artifacts in {artifacts}")
        if results:
            click.echo(results_table(results))
    sys.exit(EXIT_OK if state == "Success" else EXIT_FAILED)


def report_connection(error: Exception | None) -> None:
    """Say on stderr that waiting lost Redis (``error``) or has it back (None); the run goes on."""
    if error is None:
        click.echo("reconnected to Redis; still waiting", err=True)
    else:
        click.echo(f"lost the connection to Redis ({error}); still waiting, retrying every second", err=True)


def existing_run(conn, run_id: str) -> dict:
    """The run record of ``run_id``, or exit 2 naming it."""
    validation.check_run_id_input(run_id)
    run = conn.ledger.get_run(run_id)
    if run is None:
        fail(f"no run {run_id!r}")
    return run


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def wait(run_id: str, as_json: bool) -> None:
    """Wait for a run submitted earlier with --no-wait, then print its results."""
    validation.check_run_id_input(run_id)
    conn = connect_or_exit(get_settings())
    existing_run(conn, run_id)
    wait_and_report(conn, run_id, as_json)


@cli.command()
@click.option("--label", "labels", multiple=True, help="Consume this label's queue (repeatable).")
@click.option("--concurrency", type=int, default=None, help="Worker slots (default: number of CPUs).")
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]), default="prefork", show_default=True)
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--without-mingle", is_flag=True,
              help="Skip the 1 s start-up sync with other workers (for a worker that is alone).")
def worker(labels: tuple[str, ...], concurrency: int | None, pool: str, loglevel: str, without_mingle: bool) -> None:
    """Start a worker consuming the given labels' queues (the default queue without --label)."""
    for label in labels:
        validation.check_label(label)
    if concurrency is not None and concurrency < 1:
        fail(f"concurrency {concurrency} must be at least 1")
    settings = get_settings()
    if not settings.broker_url:
        fail("CELERY_BROKER_URL is not set: point it at your Redis (the embedded stack starts its own worker)")
    from pipeline.worker import run_worker

    run_worker(labels, concurrency, pool, loglevel, mingle=not without_mingle)


@cli.command()
def stop() -> None:
    """Stop the embedded Redis and worker now (they also stop after 10 idle minutes)."""
    from pipeline.embedded import stop_stack

    stopped = stop_stack(get_settings())
    click.echo("embedded stack stopped" if stopped else "no embedded stack was running")


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to listen on.")
def flower(port: int, address: str) -> None:
    """Start Flower against the configured broker (or the embedded stack).

    Basic auth comes from FLOWER_BASIC_AUTH (user:password). Start it before submitting:
    Flower only sees events sent while it runs. Find a run's tasks on its tasks page
    with the search `kwargs:run_id=RUN_ID`.
    """
    import os

    from pipeline.flower import flower_argv

    settings = get_settings()
    conn = connect_or_exit(settings)
    env = dict(os.environ)
    if conn.embedded:
        env.update(CELERY_BROKER_URL=conn.url, CELERY_RESULT_BACKEND=conn.url)
    if not settings.flower_basic_auth:
        click.echo("FLOWER_BASIC_AUTH is not set: Flower's pages are open, its API refuses requests", err=True)
    argv = flower_argv(settings, port, address)
    os.execve(argv[0], argv, env)


@cli.command()
@click.argument("run_id")
@click.option("--no-wait", is_flag=True, help="Print the run id and return at once.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def restart(run_id: str, no_wait: bool, as_json: bool) -> None:
    """Run a run's Failed and TriggerFailed tasks again (every unfinished one if it is stuck).

    Same run id; succeeded tasks do not run again, the others read their inputs from the
    run's record. Refused while the run is running or when every task succeeded.
    """
    from pipeline.restart import RestartRefused, restart_run

    validation.check_run_id_input(run_id)
    settings = get_settings()
    conn = connect_or_exit(settings)
    existing_run(conn, run_id)
    try:
        done = restart_run(conn.ledger, run_id, settings.stuck_after)
    except RestartRefused as exc:
        fail(str(exc))
    if no_wait:
        if as_json:
            from pipeline.report import print_json

            print_json({"run_id": run_id, "state": done.state, "restarted": done.keys, "stuck": done.stuck})
        else:
            click.echo(run_id)
        return
    if not as_json:
        why = "stuck run" if done.stuck else "failed tasks"
        click.echo(f"run {run_id} restarted ({why}): {len(done.keys)} tasks run again", err=True)
    wait_and_report(conn, run_id, as_json)


@cli.command()
@click.argument("run_id")
def cancel(run_id: str) -> None:
    """Cancel a run: revoke its queued tasks, end running ones, state Cancelled (restartable).

    Running tasks are terminated on prefork workers; a threads pool cannot kill a thread,
    so there they finish their current stage and their result is ignored.
    """
    from pipeline.cancel import CancelRefused, cancel_run

    validation.check_run_id_input(run_id)
    conn = connect_or_exit(get_settings())
    existing_run(conn, run_id)
    try:
        done = cancel_run(conn.ledger, run_id)
    except CancelRefused as exc:
        fail(str(exc))
    click.echo(f"run {run_id} cancelled: {len(done.stopped)} tasks stopped; "
               f"python cli.py restart {run_id} runs them again")


@cli.command()
@click.option("--limit", type=int, default=20, show_default=True, help="How many runs to show.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of the table.")
def runs(limit: int, as_json: bool) -> None:
    """List recent runs, newest first: id, flow version, state, duration, label."""
    from pipeline.report import print_json
    from pipeline.status import run_summary
    from pipeline.views import runs_table

    if limit < 1:
        fail(f"--limit {limit} must be at least 1")
    settings = get_settings()
    conn = connect_or_exit(settings)
    conn.ledger.forget_expired()
    docs = [run_summary(run, settings.stuck_after) for run in conn.ledger.list_runs(limit)]
    if as_json:
        print_json(docs)
    else:
        click.echo(runs_table(docs))


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def status(run_id: str, as_json: bool) -> None:
    """Show a run: every task with state, attempts and duration, and a timeline of the run.

    The run is flagged stuck when it is Pending or Running and nothing has happened for
    PIPELINE_STUCK_AFTER seconds (plus the run's own --sleep and --retry-delay).
    """
    import time

    from pipeline import flow
    from pipeline.report import print_json
    from pipeline.status import n_branches, status_document
    from pipeline.views import status_text

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


@cli.command()
@click.argument("run_id")
@click.option("--task", "task_key", default=None, help="Only this task's lines (e.g. 'train_model[0]').")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the run has finished.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: an array of {time, task, line}; with --follow, one object per line.")
def logs(run_id: str, task_key: str | None, follow: bool, as_json: bool) -> None:
    """Print what a run's stages printed, as '<ISO time> <task key> <line>'."""
    import json

    from pipeline import flow, logview
    from pipeline.report import print_json
    from pipeline.status import n_branches

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
        if state == "stuck":
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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of the table.")
def flows(as_json: bool) -> None:
    """List flow versions with first-seen time and run count ('*' marks this code's version).

    The version grows when the parsed code of the stages, the flow's shape or the canvas
    builder changes; comments, formatting and docstrings do not count.
    """
    from pipeline.ledger import iso
    from pipeline.report import print_json
    from pipeline.versioning import version_table
    from pipeline.views import flows_table

    conn = connect_or_exit(get_settings())
    versions = [{**v, "first_seen": iso(v["first_seen"])} for v in version_table(conn.ledger.r)]
    if as_json:
        print_json(versions)
    else:
        click.echo(flows_table(versions))


@cli.command()
@click.option("--older-than", type=float, default=None,
              help="Remove runs created more than this many seconds ago (default: PIPELINE_RETENTION_SECONDS).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def prune(older_than: float | None, as_json: bool) -> None:
    """Remove old runs now: their records, task states, logs and index entries.

    Artifact files are left alone, and so are runs still Pending or Running (unless stuck).
    """
    import math

    from pipeline.ledger import iso
    from pipeline.report import print_json
    from pipeline.retention import prune as prune_runs

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
        click.echo(f"pruned {result.pruned} run(s) created before {iso(result.cutoff)}")
        if result.kept_active:
            click.echo(f"kept {len(result.kept_active)} run(s) still in progress: {' '.join(result.kept_active)}")


def warn_if_unconsumed(conn, queue: str) -> None:
    """Say on stderr (one line) when no live worker consumes ``queue``: the run waits for one."""
    from pipeline.liveness import unconsumed_message

    message = unconsumed_message(conn.ledger.r, queue, embedded_url=conn.url if conn.embedded else None)
    if message:
        click.echo(message, err=True)


@cli.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Start Celery beat with beat_schedule.py: one run of the sweep per minute (run exactly one beat).

    \b
    Each tick T creates run tick-YYYYMMDDHHmmss (seed int(T.timestamp()), T in file names),
    executed by a worker on the default queue (PIPELINE_SCHEDULE_LABEL: that label's).
    Its state file lives in PIPELINE_STATE_DIR; PIPELINE_BEAT_INTERVAL=S ticks every S seconds.
    """
    settings = get_settings()
    if not settings.broker_url:
        fail("CELERY_BROKER_URL is not set: beat needs the deployment's Redis")
    import beat_schedule
    from pipeline.beat import run_beat

    run_beat(beat_schedule.build_schedule(settings), settings, loglevel)


@cli.command(cls=VariadicOptions)
@click.option("--start", "start_text", required=True, help="First tick, ISO-8601 (no zone: UTC), e.g. 2026-11-28T09:00.")
@click.option("--end", "end_text", required=True, help="Last tick, inclusive, e.g. 2026-11-28T09:05.")
@click.option("--alphas", "alphas_text", default=None, help="Ridge alphas (default: the schedule's).")
@click.option("--n-samples", type=int, default=None, help="Dataset rows (default: the schedule's).")
@click.option("--label", default=None, help="Route the runs to this label's queue (default: the schedule's).")
@click.option("--artifacts", default=None,
              help="Artifacts root: a path or an fsspec URL (default: $PIPELINE_ARTIFACTS or ./artifacts).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the run ids.")
def backfill(start_text: str, end_text: str, alphas_text: str | None, n_samples: int | None, label: str | None,
             artifacts: str | None, as_json: bool) -> None:
    """Create the runs the per-minute schedule would have created between --start and --end.

    Ticks are whole minutes, both ends included, at most 1440 a call, none in the future.
    Ticks that already have a run are skipped, so running it twice creates nothing new.
    """
    from datetime import datetime, timezone

    from pipeline import ticks

    settings = get_settings()
    start = ticks.parse_time(start_text, "start")
    end = ticks.parse_time(end_text, "end")
    moments = ticks.ticks_between(start, end, datetime.now(timezone.utc))
    alphas = validation.parse_alphas([alphas_text]) if alphas_text is not None else None
    if n_samples is not None:
        validation.check_samples(n_samples)
    label = settings.schedule_label if label is None else validation.check_label(label)
    root = validation.check_artifacts_root(artifacts or settings.artifacts_root, settings.artifacts_allowed)
    conn = connect_or_exit(settings)
    import beat_schedule  # after the checks above: it imports Celery and scikit-learn
    from pipeline.backfill import backfill as run_backfill

    alphas = beat_schedule.SCHEDULED_ALPHAS if alphas is None else alphas
    n_samples = beat_schedule.SCHEDULED_N_SAMPLES if n_samples is None else n_samples
    report = run_backfill(conn.ledger, moments, alphas=alphas, artifacts_root=root, n_samples=n_samples, label=label)
    if report.created:
        warn_if_unconsumed(conn, label or "default")
    if as_json:
        from pipeline.report import print_json

        print_json(report.document())
    else:
        click.echo(report.summary())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; bad input of any kind ends in one line and exit code 2."""
    try:
        cli.main(args=argv, standalone_mode=False, prog_name="cli.py")
    except BadInput as exc:
        fail(str(exc))
    except click.UsageError as exc:
        fail(exc.format_message())
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    return EXIT_OK


def exit_now(run) -> None:
    """Run ``run()``, flush the output, and leave without interpreter teardown.

    Celery keeps the results of a sent canvas subscribed to Redis pub/sub; finalising them
    while Python shuts down prints tracebacks and costs time. Nothing of the CLI's needs
    that teardown: every line is flushed here, the run's state lives in Redis.
    """
    try:
        code = run()
    except SystemExit as exc:
        code = exc.code
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    exit_now(main)
