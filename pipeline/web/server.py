"""Flower with the run pages: our Tornado handlers and templates added to Flower's app.

Flower 2.2 builds its Tornado ``Application`` from two module-level objects of
``flower.urls``: the ``handlers`` list (ending with a catch-all 404 handler) and the
``settings`` dict. :func:`install` puts our handlers just before that catch-all and a
template loader into the settings, then :func:`main` runs Celery's own ``flower``
command, so Flower starts exactly as ``celery flower`` would, with the same options,
port and basic auth, serving our pages beside its own.

The loader serves Flower's templates unchanged except ``navbar.html``, into which it
adds our links (so from any Flower page the runs are one click away), and ours under
the ``pipeline/`` prefix.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from tornado.template import Loader, Template

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES = WEB_DIR / "templates"
STATIC = WEB_DIR / "static"

NAV_MARKER = "</ul>"
"""Our links go before the first list end of Flower's navbar (after its Broker link)."""

NAV_INCLUDE = '{% include "pipeline/nav_items.html" %}\n      '

log = logging.getLogger(__name__)


class PipelineLoader(Loader):
    """Flower's templates, with our nav links in ``navbar.html``, and ours as ``pipeline/...``."""

    def __init__(self, flower_templates: str, **kwargs) -> None:
        super().__init__(flower_templates, **kwargs)

    def resolve_path(self, name: str, parent_path: str | None = None) -> str:
        """Names are always from the root (``base.html``, ``pipeline/run.html``), never relative."""
        return name

    def _create_template(self, name: str) -> Template:
        if name.startswith("pipeline/"):
            path = TEMPLATES / name[len("pipeline/"):]
            return Template(path.read_bytes(), name=name, loader=self)
        text = (Path(self.root) / name).read_text()
        if name == "navbar.html":
            if NAV_MARKER in text:
                text = text.replace(NAV_MARKER, NAV_INCLUDE + NAV_MARKER, 1)
            else:
                log.warning("Flower's navbar.html has no %r: the run pages are not linked from it", NAV_MARKER)
        return Template(text, name=name, loader=self)


def configured_broker_url(app) -> str:
    """The broker URL as configured (Flower derives it from the connection, whose scheme
    for a ``redis://`` broker is our kombu transport's class path, which its broker client
    and Broker page do not know)."""
    from pipeline.settings import get_settings

    return get_settings().broker_url or app.capp.conf.broker_url


def install() -> None:
    """Add our handlers and template loader to Flower's URL table and settings (before it
    starts), and give Flower's broker client the configured broker URL."""
    from flower import urls
    from flower.app import Flower

    from pipeline.redis_conn import redact
    from pipeline.web.routes import routes

    Flower.broker_uri_with_password = property(configured_broker_url)
    Flower.broker_uri = property(lambda app: redact(configured_broker_url(app)))

    if any(getattr(h, "name", None) == "pipeline-runs" for h in urls.handlers):
        return
    catch_all = urls.handlers.pop()
    urls.handlers.extend(routes(str(STATIC)))
    urls.handlers.append(catch_all)
    urls.settings["template_loader"] = PipelineLoader(urls.settings["template_path"], autoescape="xhtml_escape")


def main(argv: list[str]) -> None:
    """``python -m pipeline.web.server FLOWER_OPTIONS...``: Celery's flower command with our pages."""
    install()
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", "-A", "pipeline.celery_app", "flower", *argv]
    sys.exit(celery_main())


if __name__ == "__main__":
    main(sys.argv[1:])
