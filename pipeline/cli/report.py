"""What the CLI prints: result tables, progress bars and JSON documents."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import click

from pipeline.ledger.values import iso


def results_table(results: dict[str, float]) -> str:
    """The alpha -> R^2 table a finished sweep ends with."""
    width = max([len("alpha"), *(len(a) for a in results)])
    lines = [f"{'alpha':>{width}}  R^2", f"{'-' * width}  {'-' * 20}"]
    lines += [f"{alpha:>{width}}  {score:.18e}" for alpha, score in results.items()]
    return "\n".join(lines)


def run_document(run: dict[str, Any], results: dict[str, float], artifacts: str) -> dict[str, Any]:
    """The JSON object ``run``/``sweep``/``wait --json`` print."""
    return {
        "run_id": run["id"],
        "state": run["state"],
        "flow": run.get("flow"),
        "version": int(run["version"]) if run.get("version") else None,
        "label": run.get("label") or None,
        "artifacts": artifacts,
        "created": iso(run.get("created")),
        "started": iso(run.get("started")),
        "ended": iso(run.get("ended")),
        "results": results,
    }


def print_json(document: Any) -> None:
    """One JSON document on stdout."""
    click.echo(json.dumps(document, indent=2, sort_keys=False))


@contextmanager
def progress_bar(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr; yields ``update(done, total)``."""
    if not enabled:
        yield lambda done, total: None
        return
    state = {"bar": None, "done": 0}
    try:

        def update(done: int, total: int) -> None:
            if state["bar"] is None:
                state["bar"] = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)
                state["bar"].__enter__()
            state["bar"].update(done - state["done"])
            state["done"] = done

        yield update
    finally:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)
