"""``run``, ``sweep`` and ``wait``: submit a run (or run it locally) and wait for its results."""
from __future__ import annotations

import click

from pipeline import validation
from pipeline.cli.common import (
    VariadicOptions, connect_or_exit, existing_run, fail, wait_and_report, warn_if_unconsumed,
)
from pipeline.definition.naming import DEFAULT_N_SAMPLES
from pipeline.settings import TUTORIAL_ALPHAS, get_settings


def run_options(func):
    """Options shared by ``run`` and ``sweep``."""
    options = [
        click.option("--n-samples", type=int, default=DEFAULT_N_SAMPLES, show_default=True, help="Rows in the generated dataset."),
        click.option("--sleep", type=float, default=0.0, show_default=True, help="Seconds every stage sleeps."),
        click.option("--retries", type=int, default=0, show_default=True, help="Retries of a failing stage."),
        click.option("--retry-delay", type=float, default=0.0, show_default=True, help="Seconds between retries."),
        click.option("--fail-rate", type=float, default=0.0, show_default=True,
                     help="Probability that a train_model attempt raises (failure injection)."),
        click.option("--label", default=None, help="Route every task to this label's queue."),
        click.option("--artifacts", default=None,
                     help="Artifacts root: a path or an fsspec URL like s3://bucket/prefix "
                          "(default: $PIPELINE_ARTIFACTS or ./artifacts)."),
        click.option("--notify", multiple=True, metavar="URL",
                     help="Tell this URL when the run fails, stalls or recovers (repeatable; adds to PIPELINE_NOTIFY)."),
        click.option("--cache", "use_cache", is_flag=True,
                     help="Reuse stored results of stages whose inputs, parameters and code match; store new ones "
                          "(in <artifacts>/.cache)."),
        click.option("--refresh-cache", is_flag=True, help="Compute every stage and store the results in the cache."),
        click.option("--no-wait", is_flag=True, help="Print the run id and return at once."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table."),
        click.option("--local", is_flag=True,
                     help="Run everything in this process, no broker and no record (debug path)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command(cls=VariadicOptions)
@click.option("--alpha", type=str, default=None, help="Ridge alpha; without it, LinearRegression.")
@run_options
def run(alpha: str | None, **options) -> None:
    """Run the pipeline once: LinearRegression, or Ridge with --alpha."""
    alphas = [None] if alpha is None else validation.parse_alphas([alpha])
    if len(alphas) != 1:
        fail(f"--alpha takes one value, got {alpha!r}")
    submit_and_report(alphas, **options)


@click.command(cls=VariadicOptions)
@click.option("--alphas", "alphas_text", default=" ".join(TUTORIAL_ALPHAS), show_default=True,
              help="Ridge alphas, space- or comma-separated; one branch each.")
@run_options
def sweep(alphas_text: str, **options) -> None:
    """Train and evaluate one Ridge model per alpha, in parallel, then clean up."""
    submit_and_report(validation.parse_alphas([alphas_text]), **options)


def submit_and_report(alphas, *, n_samples, sleep, retries, retry_delay, fail_rate, label, artifacts,
                      notify, use_cache, refresh_cache, no_wait, as_json, local) -> None:
    """Validate, submit (or run locally), wait with progress, print the table or JSON, exit."""
    settings = get_settings()
    root = validation.check_run_options(n_samples=n_samples, sleep=sleep, retries=retries, retry_delay=retry_delay,
                                        fail_rate=fail_rate, label=label, artifacts=artifacts, settings=settings)
    cache = validation.cache_mode(use_cache, refresh_cache, local)
    from pipeline.notify.destinations import configured

    notifications = configured(settings, notify)
    conn = None if local else connect_or_exit(settings)  # before the heavier imports: fast errors
    from pipeline.runs.submit import RunRequest, new_run_id
    from pipeline.ledger.values import RunState

    request = RunRequest(
        alphas=alphas, artifacts_root=root, n_samples=n_samples,
        sleep=sleep, retries=retries, retry_delay=retry_delay, fail_rate=fail_rate, label=label, cache=cache,
        **notifications,
    )
    if local:
        run_here(request, new_run_id(), as_json)
        return
    from pipeline.runs.submit import submit_run

    submitted = submit_run(conn.ledger, request)
    warn_if_unconsumed(conn, request.queue)
    if no_wait:
        if as_json:
            from pipeline.cli.report import print_json, run_document

            print_json(run_document({"id": submitted.run_id, "state": RunState.PENDING}, None, submitted.artifacts))
        else:
            click.echo(submitted.run_id)
        return
    if not as_json:
        from pipeline.web.flower import where_to_look

        click.echo(f"run {submitted.run_id} submitted; artifacts in {submitted.artifacts}", err=True)
        click.echo(where_to_look(settings, submitted.run_id), err=True)
    wait_and_report(conn, submitted.run_id, as_json)


def run_here(request, run_id: str, as_json: bool) -> None:
    """``--local``: run the flow in this process, print its results (or the failed stage), exit 0/1.

    Says on stderr that the run is not recorded (:data:`pipeline.runs.local.NOT_RECORDED`)."""
    import sys

    from pipeline.artifacts.store import run_location
    from pipeline.cli.common import EXIT_FAILED
    from pipeline.cli.report import plural, print_json, results_table, run_document
    from pipeline.ledger.values import RunState
    from pipeline.runs.local import NOT_RECORDED, LocalStageFailed, run_local

    directory = run_location(request.artifacts_root, run_id)
    try:
        results, failed = run_local(request, run_id), None
    except LocalStageFailed as exc:
        results, failed = {}, exc
    state = RunState.SUCCESS if failed is None else RunState.FAILED
    if as_json:
        failures = {"recorded": False,
                    "failed": [] if failed is None else [{"key": failed.key, "alpha": failed.alpha, "error": failed.error}],
                    "blocked": 0 if failed is None else failed.not_run}
        print_json(run_document({"id": run_id, "state": state}, results, directory, failures))
    else:
        click.echo(f"run {run_id} (local): {state}; artifacts in {directory}")
        if failed is None:
            click.echo(results_table(results))
        else:
            alpha = f" (alpha {failed.alpha})" if failed.alpha is not None else ""
            click.echo(f"{failed.key}{alpha} failed: {failed.error}; {plural(failed.not_run, 'later task')} did not run")
    click.echo(NOT_RECORDED, err=True)
    if failed is not None:
        sys.exit(EXIT_FAILED)


@click.command()
@click.argument("run_id")
@click.option("--timeout", type=float, default=None,
              help="Give up waiting after this many seconds: exit code 124, the run goes on.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def wait(run_id: str, timeout: float | None, as_json: bool) -> None:
    """Wait for a run submitted earlier with --no-wait, then print its results.

    Exit code 0 when it succeeded, 1 when it failed or was cancelled, 124 when --timeout
    passed first, 130 on Ctrl-C (the run goes on in both cases).
    """
    validation.check_run_id_input(run_id)
    if timeout is not None:
        validation.check_seconds("timeout", timeout)
    conn = connect_or_exit(get_settings())
    existing_run(conn, run_id)
    wait_and_report(conn, run_id, as_json, timeout=timeout)
