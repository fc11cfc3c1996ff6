"""What every run page and API handler shares: auth, the ledger, run ids, JSON, actions.

Handlers subclass Flower's own ``BaseHandler``, so basic auth (``FLOWER_BASIC_AUTH``) is
checked exactly as on Flower's pages. Reads of Redis run on Flower's thread pool, never
on the event loop that also serves Flower's pages and events.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Callable, TypeVar

import tornado.web
from flower.views import BaseHandler
from tornado.ioloop import IOLoop

from pipeline import validation
from pipeline.ledger.records import Ledger
from pipeline.settings import Settings, get_settings

T = TypeVar("T")

READ_ONLY = "read-only: these pages accept actions only behind basic auth (set FLOWER_BASIC_AUTH)"


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The Flower process's settings, read once."""
    return get_settings()


@lru_cache(maxsize=1)
def ledger() -> Ledger:
    """The run ledger this process reads (the result backend, else the broker)."""
    from pipeline.redis_conn import make_client

    conf = settings()
    return Ledger(make_client(conf.ledger_url), conf.retention_seconds)


class PipelineHandler(BaseHandler):
    """Base of our pages: authenticated like Flower's, CSRF-checked POSTs, off-loop Redis."""

    def prepare(self) -> None:
        if not self.current_user:  # Flower's get_current_user raises 401 on bad basic auth
            raise tornado.web.HTTPError(401)

    @property
    def can_act(self) -> bool:
        """Actions (POSTs) are allowed only behind basic auth."""
        return bool(self.application.options.basic_auth)

    def check_xsrf_cookie(self) -> None:
        """Flower's cross-site checks, then always Tornado's ``_xsrf`` token check.

        Flower skips the token for basic auth (browsers resend the credentials on any
        cross-site form); the token closes that gap.
        """
        super().check_xsrf_cookie()
        tornado.web.RequestHandler.check_xsrf_cookie(self)

    def require_actions(self) -> None:
        """Refuse a POST when the pages are read-only (no basic auth configured)."""
        if not self.can_act:
            raise tornado.web.HTTPError(403, READ_ONLY)

    def run_id_arg(self, run_id: str) -> str:
        """``run_id`` from the URL, checked as the CLI checks it (400 naming it)."""
        try:
            return validation.check_run_id_input(run_id)
        except validation.BadInput as exc:
            raise tornado.web.HTTPError(400, str(exc)) from None

    def arg(self, name: str, default: str | None = None) -> str | None:
        """A query or form argument as the user typed it (Flower's get_argument escapes by default)."""
        value = self.get_argument(name, default, escape=False)
        return value if value not in ("", None) else default

    async def off_loop(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` on Flower's thread pool."""
        return await IOLoop.current().run_in_executor(None, func, *args)

    def get_template_namespace(self) -> dict[str, Any]:
        """Tornado's namespace plus the helpers our templates use."""
        from pipeline.ledger.status import format_seconds
        from pipeline.web.flower import run_search

        namespace = super().get_template_namespace()
        namespace.update(seconds=format_seconds, can_act=self.can_act, run_search=run_search,
                         tab=self.request.path.strip("/").split("/")[0])  # the nav link to mark
        return namespace

    def write_json(self, document: Any) -> None:
        """``document``, the CLI's ``--json`` document, compact (json's C encoder only runs
        without ``indent``: a 2000-alpha run's status is 1.9 MB)."""
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(document, separators=(",", ":")))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors of our pages: one line of text (JSON under /api/), not Flower's 404 page."""
        if status_code == 401:
            super().write_error(status_code, **kwargs)
            return
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.log_message if isinstance(exc, tornado.web.HTTPError) and exc.log_message else self._reason
        if self.request.path.startswith("/api/"):
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json.dumps({"error": message}))
        else:
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish(f"error: {message}\n")
