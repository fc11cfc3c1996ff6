"""``/schedule`` (and ``/api/schedule`` = ``schedule show --json``): the per-minute schedule,
its pause switch and a backfill form.

The switch calls :mod:`pipeline.ledger.schedule_switch` (as ``schedule pause|resume``
does); the form is checked by :func:`pipeline.schedule.backfill_plan.plan_backfill` and
run by :func:`pipeline.schedule.backfill.run_plan` (as ``backfill`` does).
"""
from __future__ import annotations

from pipeline import validation
from pipeline.web.base import PipelineHandler, ledger, settings
from pipeline.web.runs import NOTICE_COOKIE


def document() -> dict:
    from pipeline.schedule.status import schedule_document

    return schedule_document(ledger(), settings())


def switch(action: str) -> str:
    """Pause or resume; the line to show."""
    from pipeline.ledger import schedule_switch

    if action == "pause":
        return "schedule paused: ticks create no runs" if schedule_switch.pause(ledger()) else \
            "the schedule was already paused"
    return "schedule resumed" if schedule_switch.resume(ledger()) else "the schedule was not paused"


def backfill(form: dict[str, str]) -> str:
    """Backfill as ``backfill --start --end [--alphas]`` does; the summary line."""
    from pipeline.schedule.backfill import run_plan
    from pipeline.schedule.backfill_plan import plan_backfill

    plan = plan_backfill(form["start"], form["end"], form["alphas"] or None, None, None, None, settings())
    return run_plan(ledger(), plan).summary()


class SchedulePage(PipelineHandler):
    """``GET /schedule``; ``POST /schedule/(pause|resume|backfill)``."""

    async def get(self) -> None:
        doc = await self.off_loop(document)
        notice = self.get_secure_cookie(NOTICE_COOKIE)
        if notice:
            self.clear_cookie(NOTICE_COOKIE)
        self.render("pipeline/schedule.html", doc=doc, notice=notice.decode() if notice else None)

    async def post(self, action: str) -> None:
        self.require_actions()
        try:
            if action == "backfill":
                form = {name: self.arg(name, "") or "" for name in ("start", "end", "alphas")}
                message = await self.off_loop(backfill, form)
            else:
                message = await self.off_loop(switch, action)
        except validation.BadInput as exc:
            message = f"error: {exc}"
        self.set_secure_cookie(NOTICE_COOKIE, message, expires_days=None)
        self.redirect("/schedule", status=303)


class ScheduleApi(PipelineHandler):
    """``GET /api/schedule``: ``schedule show --json``'s object."""

    async def get(self) -> None:
        self.write_json(await self.off_loop(document))
