"""The CLI's click group and its entry points: ``python cli.py``, the ``pipeline`` console
script and ``python -m pipeline.cli.main`` (the embedded stack's worker) all run :func:`main`.

Bad input of any kind ends in one line and exit code 2; the process leaves through
:func:`exit_now`, without interpreter teardown.
"""
from __future__ import annotations

import os
import sys

import click
from click.exceptions import NoArgsIsHelpError

from pipeline.cli import cache, control, inspection, notifications, schedule, services, submit
from pipeline.cli.common import EXIT_INTERRUPTED, EXIT_OK, fail
from pipeline.settings import SettingsError
from pipeline.validation import BadInput


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run the tutorial's scikit-learn pipeline on Celery workers.

    \b
    download_dataset -> preprocess_dataset -> train_model[i] -> evaluate_model[i] -> cleanup_file[j]
    """


for command in (
    submit.run, submit.sweep, submit.wait,
    control.restart, control.cancel,
    inspection.runs, inspection.status, inspection.logs, inspection.flows, inspection.prune,
    notifications.notifications,
    services.worker, services.stop, services.flower, services.beat, services.backfill, schedule.schedule,
    cache.cache,
):
    cli.add_command(command)


def main(argv: list[str] | None = None, prog_name: str = "cli.py") -> int:
    """Run the CLI; bad input of any kind ends in one line and exit code 2; no command: the help."""
    try:
        cli.main(args=argv, standalone_mode=False, prog_name=prog_name)
    except (BadInput, SettingsError) as exc:
        fail(str(exc))
    except NoArgsIsHelpError as exc:  # no command at all: the help, as --help prints it
        click.echo(exc.ctx.get_help())
        return EXIT_OK
    except click.UsageError as exc:
        fail(exc.format_message())
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a full Redis: one line naming it, whatever the command
        from pipeline.redis_conn import full_redis, full_redis_message
        from pipeline.settings import get_settings

        full = full_redis(exc)
        if full is None:
            raise
        fail(full_redis_message(full, get_settings().ledger_url))
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


def console() -> None:
    """Entry point of the ``pipeline`` console script (``pip install .``): ``python cli.py`` by another name."""
    exit_now(lambda: main(prog_name="pipeline"))


if __name__ == "__main__":
    exit_now(main)
