#!/usr/bin/env python
"""Command line of the pipeline: submit runs and sweeps, wait for them, run workers.

With CELERY_BROKER_URL unset, commands use an embedded Redis and worker that they start
themselves; with it set, they only submit to and read from that deployment.
"""
from __future__ import annotations

import sys
from pathlib import Path

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
        click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Artifacts root (default: $PIPELINE_ARTIFACTS or ./artifacts)."),
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
    from pipeline.runs import RunRequest, new_run_id

    settings = get_settings()
    validation.check_samples(n_samples)
    validation.check_seconds("sleep", sleep, settings.visibility_timeout)
    validation.check_seconds("retry delay", retry_delay, settings.visibility_timeout)
    validation.check_retries(retries)
    validation.check_rate(fail_rate)
    if label is not None:
        validation.check_label(label)
    request = RunRequest(
        alphas=alphas, artifacts_root=(artifacts or settings.artifacts_root).resolve(), n_samples=n_samples,
        sleep=sleep, retries=retries, retry_delay=retry_delay, fail_rate=fail_rate, label=label,
    )
    if local:
        from pipeline.local import run_local
        from pipeline.report import print_json, results_table

        run_id = new_run_id()
        results = run_local(request, run_id)
        directory = str(request.artifacts_root / run_id)
        if as_json:
            print_json({"run_id": run_id, "state": "Success", "artifacts": directory, "results": results})
        else:
            click.echo(f"run {run_id} (local): Success, artifacts in {directory}")
            click.echo(results_table(results))
        return
    from pipeline.runs import submit_run

    conn = connect_or_exit(settings)
    submitted = submit_run(conn.ledger, request)
    if no_wait:
        if as_json:
            from pipeline.report import print_json

            print_json({"run_id": submitted.run_id, "state": "Pending", "artifacts": str(submitted.artifacts)})
        else:
            click.echo(submitted.run_id)
        return
    if not as_json:
        click.echo(f"run {submitted.run_id} submitted; artifacts in {submitted.artifacts}", err=True)
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

    try:
        with progress_bar(run_id, enabled=not as_json and sys.stderr.isatty()) as update:
            state = wait_for_run(conn.ledger, run_id, update)
    except KeyboardInterrupt:
        click.echo(f"\nstopped waiting; run {run_id} goes on: python cli.py wait {run_id}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    run = conn.ledger.get_run(run_id)
    results = run_results(conn.ledger, run_id)
    artifacts = str(Path(run["artifacts"]) / run_id)
    if as_json:
        print_json(run_document(run, results, artifacts))
    else:
        click.echo(f"run {run_id}: {state}; artifacts in {artifacts}")
        if results:
            click.echo(results_table(results))
    sys.exit(EXIT_OK if state == "Success" else EXIT_FAILED)


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
    """Wait for a run submitted earlier (e.g. with --no-wait) and print its results."""
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


if __name__ == "__main__":
    sys.exit(main())
