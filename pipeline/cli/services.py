"""``worker``, ``stop``, ``flower``, ``beat`` and ``backfill``: the processes around the runs."""
from __future__ import annotations

import click

from pipeline import validation
from pipeline.cli.common import VariadicOptions, check_broker_or_exit, connect_or_exit, fail, warn_if_unconsumed
from pipeline.settings import FLOWER_PORT, WORKER_POOLS, get_settings


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--label", "labels", multiple=True, help="Consume this label's queue (repeatable).")
@click.option("--concurrency", type=int, default=None, help="Worker slots (default: number of CPUs).")
@click.option("--pool", type=click.Choice(WORKER_POOLS), default=WORKER_POOLS[0], show_default=True)
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--without-mingle", is_flag=True,
              help="Skip the 1 s start-up sync with other workers (for a worker that is alone).")
@click.option("--log-tasks", is_flag=True,
              help="Also log Celery's 'received' and 'succeeded' line for every task (off: they cost "
                   "about 10 % of a sweep of small tasks; status, logs and Flower show every task).")
@click.pass_context
def worker(ctx: click.Context, labels: tuple[str, ...], concurrency: int | None, pool: str, loglevel: str,
           without_mingle: bool, log_tasks: bool) -> None:
    """Start a worker consuming the given labels' queues (the default queue without --label).

    \b
    Any other option goes to `celery worker` as it is, after ours (so it wins), e.g.
      python cli.py worker --hostname gpu1@%h --max-tasks-per-child 50 --autoscale 8,2
    (see `celery worker --help`; an option Celery does not know exits with code 2).
    """
    for label in labels:
        validation.check_label(label)
    if concurrency is not None and concurrency < 1:
        fail(f"concurrency {concurrency} must be at least 1")
    settings = get_settings()
    if not settings.broker_url:
        fail("CELERY_BROKER_URL is not set: point it at your Redis (the embedded stack starts its own worker)")
    check_broker_or_exit(settings)
    from pipeline.worker.start import run_worker

    run_worker(labels, concurrency, pool, loglevel, mingle=not without_mingle, log_tasks=log_tasks,
               celery_options=ctx.args)


@click.command()
def stop() -> None:
    """Stop the embedded Redis and worker now (they also stop after 10 idle minutes)."""
    from pipeline.embedded.stack import stop_stack

    stopped = stop_stack(get_settings())
    click.echo("embedded stack stopped" if stopped else "no embedded stack was running")


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=FLOWER_PORT, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to listen on.")
def flower(port: int, address: str) -> None:
    """Start Flower and the run pages (/runs) against the configured broker (or the embedded stack).

    Basic auth comes from FLOWER_BASIC_AUTH (user:password); without it the run pages are
    read-only and only 127.0.0.1 may be listened on. The run pages read the run record,
    so they show every run; Flower's own pages only see events sent while it runs.
    """
    import os

    from pipeline.web.flower import flower_argv, is_loopback

    settings = get_settings()
    if not settings.flower_basic_auth and not is_loopback(address):
        fail(f"--address {address} without FLOWER_BASIC_AUTH: set FLOWER_BASIC_AUTH=user:password to listen "
             f"beyond this machine (without it the pages are read-only and on 127.0.0.1)")
    conn = connect_or_exit(settings)
    env = dict(os.environ)
    if conn.embedded:
        env.update(CELERY_BROKER_URL=conn.url, CELERY_RESULT_BACKEND=conn.url)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    if not settings.flower_basic_auth:
        click.echo("FLOWER_BASIC_AUTH is not set: the run pages are read-only (no Restart, Cancel or Run), "
                   "Flower's API refuses requests", err=True)
    argv = flower_argv(settings, port, address)
    os.execve(argv[0], argv, env)


@click.command()
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
    check_broker_or_exit(settings)
    from pipeline.schedule.beat import run_beat

    run_beat(settings, loglevel)


@click.command(cls=VariadicOptions)
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
    from pipeline.schedule.backfill_plan import plan_backfill

    settings = get_settings()
    plan = plan_backfill(start_text, end_text, alphas_text, n_samples, label, artifacts, settings)
    conn = connect_or_exit(settings)
    from pipeline.schedule.backfill import run_plan  # after the checks above: it imports Celery

    report = run_plan(conn.ledger, plan)
    if report.created:
        warn_if_unconsumed(conn, plan.label or "default")
    if as_json:
        from pipeline.cli.report import print_json

        print_json(report.document())
    else:
        click.echo(report.summary())
