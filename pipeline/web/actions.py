"""``POST /runs/<run_id>/restart`` and ``/cancel``: the CLI's ``restart`` and ``cancel``, from a button.

They call :func:`pipeline.runs.restart.restart_run` and
:func:`pipeline.runs.cancel.cancel_run`, the functions the CLI calls, behind basic auth
and the ``_xsrf`` token; with no ``FLOWER_BASIC_AUTH`` they are refused (read-only).
The outcome, or the refusal in the CLI's words, shows on the run's page.
"""
from __future__ import annotations

from typing import Callable

from pipeline.validation import BadInput, restart_overrides
from pipeline.web.base import PipelineHandler, ledger, settings
from pipeline.web.runs import NOTICE_COOKIE


def overrides_from_form(form: dict[str, str]) -> dict:
    """``restart --fail-rate/--retries/--retry-delay`` from the form (blank: keep); BadInput if bad."""
    values = {name: (form.get(name) or "").strip() for name in ("fail_rate", "retries", "retry_delay")}
    parsed = {}
    for name, text in values.items():
        kind = int if name == "retries" else float
        try:
            parsed[name] = kind(text) if text else None
        except ValueError:
            raise BadInput(f"{name.replace('_', '-')} {text!r} is not a {'whole ' if kind is int else ''}number") from None
    return restart_overrides(parsed["fail_rate"], parsed["retries"], parsed["retry_delay"],
                             settings().visibility_timeout, refresh_cache=bool(form.get("refresh_cache")))


FORM_FIELDS = ("fail_rate", "retries", "retry_delay", "from", "refresh_cache")
"""The Restart form's fields: ``restart``'s options (blank: not given)."""


def restart(run_id: str, form: dict[str, str]) -> str:
    """Restart ``run_id`` as ``python cli.py restart RUN_ID [--from KEY] [--fail-rate ...] [--refresh-cache]
    --no-wait`` does; the line to show (with the CLI's warning when no live worker runs the run's version)."""
    from pipeline.runs.restart import restart_run
    from pipeline.worker.liveness import unconsumed_message, version_message

    overrides = overrides_from_form(form)
    from_key = (form.get("from") or "").strip() or None
    book = ledger()
    done = restart_run(book, run_id, settings().stuck_after, from_key=from_key, overrides=overrides)
    why = f"from {from_key}" if from_key else "stuck run" if done.stuck else "failed tasks"
    changed = "".join(f", {name} {value}" for name, value in (done.overrides or {}).items())
    line = f"run {run_id} restarted ({why}): {len(done.keys)} task(s) run again{changed}"
    run = book.get_run(run_id) or {}
    queue = run.get("queue") or "default"
    warning = unconsumed_message(book, queue) or (
        version_message(book, queue, run["digest"]) if run.get("digest") else None)
    return f"{line}; {warning}" if warning else line


def cancel(run_id: str, form: dict[str, str]) -> str:
    """Cancel ``run_id`` as ``python cli.py cancel RUN_ID`` does; the line to show."""
    from pipeline.runs.cancel import cancel_run

    done = cancel_run(ledger(), run_id)
    return f"run {run_id} cancelled: {len(done.stopped)} task(s) stopped; Restart runs them again"


ACTIONS: dict[str, Callable[[str, dict[str, str]], str]] = {"restart": restart, "cancel": cancel}


class RunAction(PipelineHandler):
    """``POST /runs/<run_id>/(restart|cancel)``, then back to the run's page (303)."""

    async def post(self, run_id: str, action: str) -> None:
        from pipeline.runs.cancel import CancelRefused
        from pipeline.runs.restart import RestartRefused

        self.require_actions()
        run_id = self.run_id_arg(run_id)
        form = {name: self.arg(name, "") or "" for name in FORM_FIELDS}
        try:
            message = await self.off_loop(ACTIONS[action], run_id, form)
        except (RestartRefused, CancelRefused, BadInput) as exc:
            message = f"error: {exc}"
        self.set_secure_cookie(NOTICE_COOKIE, message, expires_days=None)
        self.redirect(f"/runs/{run_id}", status=303)
