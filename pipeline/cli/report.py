"""What the CLI prints after a wait: result tables, what went wrong, and JSON documents."""
from __future__ import annotations

import json
from typing import Any

import click

from pipeline.definition import flow
from pipeline.ledger.values import RunState, iso


def format_score(score: float) -> str:
    """An R^2 for a terminal: 6 decimals (``--json`` and the eval files keep every digit)."""
    return f"{score:.6f}"


def results_table(results: dict[str, float]) -> str:
    """The alpha -> R^2 table a finished sweep ends with (R^2 as :func:`format_score`)."""
    width = max([len("alpha"), *(len(a) for a in results)])
    lines = [f"{'alpha':>{width}}  R^2", f"{'-' * width}  {'-' * 9}"]
    lines += [f"{alpha:>{width}}  {format_score(score):>9}" for alpha, score in results.items()]
    return "\n".join(lines)


def run_document(run: dict[str, Any], results: dict[str, float] | None, artifacts: str,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object ``run``/``sweep``/``wait --json`` print (and ``--no-wait``, ``--local``).

    ``run``: the ledger's record (every record has ``created``); or, for a run with none
    yet (``--no-wait``) or ever (``--local``), just its ``id`` and ``state``: the document
    then holds only those and the artifacts. ``results`` unless None, then ``extra`` (e.g.
    what :func:`pipeline.ledger.status.failure_summary` found) end it.
    """
    recorded = "created" in run
    doc: dict[str, Any] = {"run_id": run["id"], "state": run["state"]}
    if recorded:
        doc.update(flow=run.get("flow"), version=int(run["version"]) if run.get("version") else None,
                   label=run.get("label") or None)
    doc["artifacts"] = artifacts
    if recorded:
        doc.update(created=iso(run.get("created")), started=iso(run.get("started")), ended=iso(run.get("ended")))
    if results is not None:
        doc["results"] = results
    doc.update(extra or {})
    return doc


def plural(n: int, noun: str) -> str:
    """``1 task``, ``2 tasks``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def outcome_text(run_id: str, state: str, failures: dict[str, Any]) -> list[str]:
    """What went wrong in an ended run and what to type next: each failed task with its alpha
    and the last line of its error, how many were blocked, and the commands (a cancelled
    run: how to resume it). Nothing for a run that succeeded."""
    lines: list[str] = []
    if state == RunState.CANCELLED:
        lines.append(f"run {run_id} was cancelled: {plural(failures['cancelled'], 'task')} stopped before "
                     f"they ended; resume it (succeeded tasks are kept): python cli.py restart {run_id}")
    failed = failures["failed"]
    if failed:
        width = max(len(f["key"]) for f in failed)
        lines += ["", f"{plural(len(failed), 'task')} failed:"]
        for f in failed:
            alpha = f"alpha {f['alpha']}" if f["alpha"] is not None else ""
            lines.append(f"  {f['key']:<{width}}  {alpha:<{len('alpha ') + 8}}  {f['error'] or '(no error recorded)'}")
    if failures["blocked"]:
        lines.append(f"{plural(failures['blocked'], 'task')} blocked (TriggerFailed): "
                     f"never ran because a task upstream failed")
    if failed or (state == RunState.FAILED and failures["blocked"]):
        key = failed[0]["key"] if failed else flow.DOWNLOAD
        commands = [(f"python cli.py status {run_id}", "every task, its error and the timeline"),
                    (f"python cli.py logs {run_id} --task '{key}'", "what it printed, and its traceback"),
                    (f"python cli.py restart {run_id}", "run the failed and blocked tasks again")]
        width = max(len(command) for command, _ in commands)
        lines += ["", "next:"] + [f"  {command:<{width}}  # {why}" for command, why in commands]
    return lines


def report_ended(ledger, run_id: str, state: str, as_json: bool) -> bool:
    """Print an ended run: its state, results table and what went wrong (or its ``--json``
    document); True if it succeeded."""
    from pipeline.artifacts.store import run_location
    from pipeline.ledger.status import failure_summary, run_alphas
    from pipeline.runs.submit import run_results

    run = ledger.get_run(run_id)
    alphas = run_alphas(run)
    failures = failure_summary(ledger.tasks(run_id, flow.task_keys(len(alphas))), alphas)
    results = run_results(ledger, run_id)
    artifacts = run_location(run["artifacts"], run_id)
    if as_json:
        print_json(run_document(run, results, artifacts, failures))
    else:
        click.echo(f"run {run_id}: {state}; artifacts in {artifacts}")
        if results:
            click.echo(results_table(results))
        for line in outcome_text(run_id, state, failures):
            click.echo(line)
    return state == RunState.SUCCESS


def print_json(document: Any) -> None:
    """One JSON document on stdout."""
    click.echo(json.dumps(document, indent=2, sort_keys=False))
