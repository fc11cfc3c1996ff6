"""``cache ls`` and ``cache prune``: what the stage cache holds, and keeping it bounded."""
from __future__ import annotations

import click

from pipeline import validation
from pipeline.settings import get_settings


def _store(artifacts: str | None):
    from pipeline.cache.store import CacheStore

    settings = get_settings()
    root = validation.check_artifacts_root(artifacts or settings.artifacts_root, settings.artifacts_allowed)
    return CacheStore(root)


ARTIFACTS_OPTION = click.option(
    "--artifacts", default=None,
    help="Artifacts root whose cache to use (default: $PIPELINE_ARTIFACTS or ./artifacts).")


@click.group()
def cache() -> None:
    """The stage cache of an artifacts root (<root>/.cache): runs with --cache fill and reuse it."""


@cache.command("ls")
@ARTIFACTS_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of the table.")
def cache_ls(artifacts: str | None, as_json: bool) -> None:
    """List the cache's entries, newest first: key, stage, the task and run that stored it, size."""
    from pipeline.cli.report import print_json
    from pipeline.cli.views import table
    from pipeline.ledger.values import iso

    store = _store(artifacts)
    entries = store.entries()
    docs = [{"key": e.key, "stage": e.stage, "run_id": e.run_id, "task": e.task, "created": iso(e.created),
             "size": e.size(), "files": sorted(e.files)} for e in entries]
    if as_json:
        print_json(docs)
        return
    if not docs:
        click.echo(f"the cache at {store.location} is empty")
        return
    click.echo(table(("key", "stage", "stored by", "run", "created", "bytes"),
                     [(d["key"][:12], d["stage"], d["task"], d["run_id"], d["created"], d["size"]) for d in docs]))
    click.echo(f"{len(docs)} entries, {sum(d['size'] for d in docs)} bytes of files, in {store.location}")


@cache.command("prune")
@ARTIFACTS_OPTION
@click.option("--older-than", default=None, metavar="D",
              help="Remove entries stored more than D ago: 90s, 15m, 12h, 7d (default: PIPELINE_RETENTION_SECONDS).")
@click.option("--max-size", default=None, metavar="S",
              help="Then remove the oldest entries until their files take at most S: 500M, 2G.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def cache_prune(artifacts: str | None, older_than: str | None, max_size: str | None, as_json: bool) -> None:
    """Remove old entries (and the file contents no entry needs any more) now."""
    from pipeline.cli.report import print_json

    age = (get_settings().retention_seconds if older_than is None
           else validation.parse_duration("--older-than", older_than))
    limit = None if max_size is None else validation.parse_size("--max-size", max_size)
    store = _store(artifacts)
    report = store.prune(older_than=age, max_size=limit)
    if as_json:
        print_json({"cache": store.location, **report.as_dict()})
        return
    click.echo(f"removed {report.entries_removed} entries and {report.blobs_removed} files "
               f"({report.bytes_freed} bytes); kept {report.entries_kept} entries ({report.bytes_kept} bytes) "
               f"in {store.location}")
