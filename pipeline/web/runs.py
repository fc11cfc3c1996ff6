"""``/runs`` and ``/runs/<run_id>``: the runs list and one run's page, and their JSON under ``/api/runs``.

``GET /api/runs`` is the array ``runs --json`` prints and ``GET /api/runs/<run_id>`` the
object ``status RUN_ID --json`` prints: the same builders make them.
"""
from __future__ import annotations

from urllib.parse import urlencode

import tornado.web

from pipeline import validation
from pipeline.ledger import logs as logview
from pipeline.ledger.listing import RunFilter, page_of_runs
from pipeline.ledger.status import run_summary
from pipeline.ledger.values import RUN_STATES
from pipeline.web.base import PipelineHandler, ledger, settings
from pipeline.web.run_view import check_task, run_view, status_of

PAGE_SIZE = 50
"""Runs a page of ``/runs`` lists."""

MAX_LIMIT = 1000
"""Most runs one ``/api/runs`` call returns."""

NOTICE_COOKIE = "pipeline_notice"
"""Signed cookie carrying the one-line outcome of an action to the next page."""


class RunsMixin(PipelineHandler):
    """Reads the filters and paging of the runs list from the query."""

    def run_filter(self) -> RunFilter:
        state = self.arg("state")
        if state is not None and state not in RUN_STATES:
            raise tornado.web.HTTPError(400, f"unknown state {state!r}: one of {', '.join(RUN_STATES)}")
        label = self.arg("label")
        if label is not None:
            label = self.checked(validation.check_label, label)
        version = self.arg("version")
        if version is not None:
            version = version.lstrip("v")
            if not version.isdigit():
                raise tornado.web.HTTPError(400, f"version {self.arg('version')!r} must be a number like 3 or v3")
        return RunFilter(state=state, label=label, version=int(version) if version else None)

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.arg(name)
        if raw is None:
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise tornado.web.HTTPError(400, f"{name} {raw!r} must be a whole number from {low} to {high}")
        return int(raw)

    def checked(self, check, value):
        try:
            return check(value)
        except validation.BadInput as exc:
            raise tornado.web.HTTPError(400, str(exc)) from None

    async def summaries(self, offset: int, limit: int) -> tuple[list[dict], bool]:
        where = self.run_filter()
        records, more = await self.off_loop(page_of_runs, ledger(), offset, limit, where)
        stuck_after = settings().stuck_after
        return [run_summary(run, stuck_after) for run in records], more


class RunsPage(RunsMixin):
    """``GET /runs``: newest first, filtered by state, label and version, paged."""

    async def get(self) -> None:
        page = self.int_arg("page", 1, 1, 10**6)
        docs, more = await self.summaries((page - 1) * PAGE_SIZE, PAGE_SIZE)
        where = self.run_filter()

        def page_url(number: int) -> str:
            query = {"state": where.state, "label": where.label, "version": where.version, "page": number}
            return "/runs?" + urlencode({k: v for k, v in query.items() if v is not None})

        self.render("pipeline/runs.html", runs=docs, page=page, more=more, where=where, states=RUN_STATES,
                    page_url=page_url)


class RunsApi(RunsMixin):
    """``GET /api/runs``: ``runs --json``'s array (``limit``, default 20; ``offset``; filters)."""

    async def get(self) -> None:
        docs, _more = await self.summaries(self.int_arg("offset", 0, 0, 10**9),
                                           self.int_arg("limit", 20, 1, MAX_LIMIT))
        self.write_json(docs)


class RunApi(PipelineHandler):
    """``GET /api/runs/<run_id>``: ``status RUN_ID --json``'s object."""

    async def get(self, run_id: str) -> None:
        run_id = self.run_id_arg(run_id)
        doc = await self.off_loop(status_of, ledger(), run_id, settings().stuck_after)
        if doc is None:
            raise tornado.web.HTTPError(404, f"no run {run_id!r}")
        self.write_json(doc)


class RunLogsApi(PipelineHandler):
    """``GET /api/runs/<run_id>/logs[?task=KEY]``: ``logs RUN_ID --json``'s array."""

    async def get(self, run_id: str) -> None:
        run_id = self.run_id_arg(run_id)
        task = self.arg("task")

        def read():
            doc = status_of(ledger(), run_id, settings().stuck_after)
            if doc is None:
                return None
            check_task(doc, task)
            return list(logview.read_all(ledger(), run_id, task=task))

        try:
            lines = await self.off_loop(read)
        except ValueError as exc:
            raise tornado.web.HTTPError(400, f"{exc} in run {run_id}") from None
        if lines is None:
            raise tornado.web.HTTPError(404, f"no run {run_id!r}")
        self.write_json(lines)


class RunPage(PipelineHandler):
    """``GET /runs/<run_id>[?task=KEY][&all=1]``: the run page (``/runs/<run_id>/live``: its live part alone).

    ``task``: only that task's log lines; ``all=1``: every task row and schematic node of a
    big run (by default it lists only the tasks not Pending or Success).
    """

    async def get(self, run_id: str, live: str | None = None) -> None:
        run_id = self.run_id_arg(run_id)
        task = self.arg("task")
        show_all = self.arg("all") == "1"
        try:
            view = await self.off_loop(run_view, ledger(), run_id, settings().stuck_after, task, show_all)
        except ValueError as exc:
            raise tornado.web.HTTPError(400, f"{exc} in run {run_id}") from None
        if view is None:
            raise tornado.web.HTTPError(404, f"no run {run_id!r} (expired, pruned or never recorded)")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Run-State", view.doc["state"])
        notice = None
        if not live:
            notice = self.get_secure_cookie(NOTICE_COOKIE)
            if notice:
                self.clear_cookie(NOTICE_COOKIE)
                notice = notice.decode()
        template = "pipeline/run_live.html" if live else "pipeline/run.html"
        self.render(template, view=view, doc=view.doc, notice=notice)
