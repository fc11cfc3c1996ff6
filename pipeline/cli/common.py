"""What the CLI's commands share: exit codes, the one-line error, connecting, waiting."""
from __future__ import annotations

import sys

import click

from pipeline import validation
from pipeline.redis_conn import BrokerUnreachable

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

EXIT_STUCK = 3
"""``sweep``/``run``/``wait``/``restart``: the run waited on is flagged stuck (it is left as it is)."""

EXIT_TIMEOUT = 124
"""``wait --timeout S``: the run had not ended after S seconds (it goes on); as timeout(1)."""


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


def connect_or_exit(settings):
    """Connect to the broker (or embedded stack); exit 2 with one line if unreachable or one
    we cannot serve."""
    from pipeline.brokers import UnsupportedBroker
    from pipeline.embedded.connect import connect

    try:
        return connect(settings, announce=lambda msg: click.echo(msg, err=True))
    except (BrokerUnreachable, UnsupportedBroker) as exc:
        fail(str(exc))


def check_broker_or_exit(settings) -> None:
    """Exit 2 with one line unless the configured broker and run record are ones we serve
    (for commands that start a process on the broker without connecting first: worker, beat)."""
    from pipeline.brokers import UnsupportedBroker, check_supported

    try:
        check_supported(settings)
    except UnsupportedBroker as exc:
        fail(str(exc))


def wait_and_report(conn, run_id: str, as_json: bool, timeout: float | None = None) -> None:
    """Wait for ``run_id`` with a progress bar, print its results and what went wrong, exit
    0/1 (130 on Ctrl-C; 3 when the run is stuck; 124 when ``timeout`` seconds passed first)."""
    from pipeline.cli.progress import progress_bar
    from pipeline.cli.report import print_json, report_ended
    from pipeline.runs.stuck import RunLost, RunStuck
    from pipeline.runs.submit import wait_for_run
    from pipeline.settings import get_settings

    try:
        with progress_bar(conn.ledger, run_id, enabled=not as_json and sys.stderr.isatty()) as update:
            state = wait_for_run(conn.ledger, run_id, update, on_connection=report_connection,
                                 stuck_after=get_settings().stuck_after, timeout=timeout)
    except KeyboardInterrupt:
        click.echo(f"\nstopped waiting; run {run_id} goes on: python cli.py wait {run_id}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except RunStuck as exc:
        fail(f"{exc}; left as it is: python cli.py status {run_id} / python cli.py restart {run_id}", EXIT_STUCK)
    except RunLost as exc:
        fail(str(exc), EXIT_FAILED)
    if state is None:
        now = (conn.ledger.get_run(run_id) or {}).get("state")
        click.echo(f"run {run_id} has not ended after {timeout:g} s ({now}); it goes on: "
                   f"python cli.py wait {run_id}", err=True)
        if as_json:
            print_json({"run_id": run_id, "state": now, "timed_out": True})
        sys.exit(EXIT_TIMEOUT)
    sys.exit(EXIT_OK if report_ended(conn.ledger, run_id, state, as_json) else EXIT_FAILED)


def report_connection(error: Exception | None) -> None:
    """Say on stderr that waiting lost Redis (``error``) or has it back (None); the run goes on."""
    if error is None:
        click.echo("reconnected to Redis; still waiting", err=True)
    else:
        click.echo(f"lost the connection to Redis ({error}); still waiting, retrying every second", err=True)


def existing_run(conn, run_id: str) -> dict:
    """The run record of ``run_id``; else exit 2 naming it, or exit 1 when the record was lost.

    A run whose directory is still under the artifacts root but whose record is not in
    Redis was recorded once: Redis lost it (restarted without persistence, or flushed).
    """
    validation.check_run_id_input(run_id)
    run = conn.ledger.get_run(run_id)
    if run is None:
        directory = orphaned_run_directory(run_id)
        if directory:
            from pipeline.runs.stuck import lost_record_message

            fail(lost_record_message(run_id, directory), EXIT_FAILED)
        fail(f"no run {run_id!r}")
    return run


def orphaned_run_directory(run_id: str) -> str | None:
    """The directory of ``run_id`` under the configured artifacts root if it holds files, else None."""
    from pipeline.artifacts.store import open_store, run_location
    from pipeline.settings import get_settings

    root = get_settings().artifacts_root
    try:
        return run_location(root, run_id) if open_store(root).listing(run_id) else None
    except Exception:  # an unreadable or remote root that does not answer: nothing to say
        return None


def warn_if_unconsumed(conn, queue: str, digest: str | None = None) -> None:
    """Say on stderr (one line) when no live worker consumes ``queue``, or none of those runs
    the flow version ``digest`` (default: this code's): the run waits for one."""
    from pipeline.ledger.versions import current_digest
    from pipeline.worker.liveness import unconsumed_message, version_message

    embedded_url = conn.url if conn.embedded else None
    message = (unconsumed_message(conn.ledger, queue, embedded_url=embedded_url)
               or version_message(conn.ledger, queue, digest or current_digest(), embedded_url=embedded_url))
    if message:
        click.echo(message, err=True)
