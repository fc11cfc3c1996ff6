"""``/flows``: the flow's versions (``flows --json`` at ``/api/flows``) and the Run form (Quick Run).

The form takes every option ``sweep`` takes, with the same defaults; its values are
checked by :func:`pipeline.validation.check_run_options`, as the CLI's are, so a bad
value gets the CLI's line on the form and nothing is enqueued. A good one is submitted
with :func:`pipeline.runs.submit.submit_run` and the browser goes to the new run's page.
"""
from __future__ import annotations

from typing import Any

from pipeline import validation
from pipeline.settings import CACHE_MODES, TUTORIAL_ALPHAS
from pipeline.definition.naming import DEFAULT_N_SAMPLES
from pipeline.ledger.versions import version_documents
from pipeline.web.base import PipelineHandler, ledger, settings
from pipeline.web.runs import NOTICE_COOKIE

FORM_DEFAULTS = {
    "alphas": " ".join(TUTORIAL_ALPHAS), "n_samples": str(DEFAULT_N_SAMPLES), "sleep": "0", "retries": "0",
    "retry_delay": "0", "fail_rate": "0", "label": "", "artifacts": "", "cache": "off",
}
"""The Run form's fields and defaults: ``sweep``'s options and defaults."""


def _number(name: str, text: str, kind: type) -> Any:
    try:
        return kind(text.strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise validation.BadInput(f"{name.replace('_', '-')} {text!r} is not {what}") from None


def request_from_form(form: dict[str, str]):
    """The RunRequest the form asks for; BadInput (the CLI's line) for a bad value."""
    from pipeline.runs.submit import RunRequest

    conf = settings()
    alphas = validation.parse_alphas([form["alphas"]])
    options = {"n_samples": _number("n_samples", form["n_samples"], int),
               "sleep": _number("sleep", form["sleep"], float),
               "retries": _number("retries", form["retries"], int),
               "retry_delay": _number("retry_delay", form["retry_delay"], float),
               "fail_rate": _number("fail_rate", form["fail_rate"], float),
               "label": form["label"].strip() or None}
    root = validation.check_run_options(**options, artifacts=form["artifacts"].strip() or None, settings=conf)
    cache = form.get("cache") or "off"
    if cache not in CACHE_MODES:
        raise validation.BadInput(f"cache {cache!r} is not one of {', '.join(CACHE_MODES)}")
    from pipeline.notify.destinations import configured

    return RunRequest(alphas=alphas, artifacts_root=root, cache=cache, **options, **configured(conf))


def submit(form: dict[str, str]) -> tuple[str, str | None]:
    """Check and submit the form's run; (run id, the no-live-worker warning or None)."""
    from pipeline.runs.submit import submit_run
    from pipeline.worker.liveness import unconsumed_message

    request = request_from_form(form)
    submitted = submit_run(ledger(), request)
    return submitted.run_id, unconsumed_message(ledger(), request.queue)


class FlowsPage(PipelineHandler):
    """``GET /flows``: versions and the Run form; ``POST /flows``: Quick Run."""

    async def get(self) -> None:
        await self.show(dict(FORM_DEFAULTS), None)

    async def show(self, form: dict[str, str], error: str | None) -> None:
        versions = version_documents(await self.off_loop(ledger().version_table))
        self.render("pipeline/flows.html", versions=versions, form=form, error=error,
                    default_artifacts=settings().artifacts_root, cache_modes=CACHE_MODES)

    async def post(self) -> None:
        self.require_actions()
        form = {name: self.arg(name, "") or "" for name in FORM_DEFAULTS}
        try:
            run_id, warning = await self.off_loop(submit, form)
        except validation.BadInput as exc:
            self.set_status(400)
            await self.show(form, str(exc))
            return
        notice = f"run {run_id} submitted" + (f"; {warning}" if warning else "")
        self.set_secure_cookie(NOTICE_COOKIE, notice, expires_days=None)
        self.redirect(f"/runs/{run_id}", status=303)


class FlowsApi(PipelineHandler):
    """``GET /api/flows``: ``flows --json``'s array."""

    async def get(self) -> None:
        self.write_json(version_documents(await self.off_loop(ledger().version_table)))
