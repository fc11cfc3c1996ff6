"""Notification destinations: URLs given in ``PIPELINE_NOTIFY`` or ``--notify``.

``http(s)://`` URLs are generic JSON webhooks (Standard Webhooks, signed); every other
scheme (``slack://``, ``mailto://``, ``json://``, ...) is an Apprise URL. A malformed
one is refused when it is given (:class:`BadInput`), so nothing is enqueued.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipeline.settings import NOTIFY_EVENT_NAMES
from pipeline.validation import BadInput

if TYPE_CHECKING:
    from pipeline.settings import Settings

WEBHOOK_SCHEMES = ("http", "https")
"""Schemes sent as signed JSON webhooks; any other goes through Apprise."""


def is_webhook(url: str) -> bool:
    """True for a generic webhook URL (``http(s)://``), False for an Apprise one."""
    return urlsplit(url).scheme.lower() in WEBHOOK_SCHEMES


def _apprise_plugin(url: str):
    import apprise  # only when an Apprise URL is given: the CLI's import time stays small

    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def check_destination(url: str) -> str:
    """``url`` if it is a usable destination, else :class:`BadInput` naming it."""
    parts = urlsplit(url.strip())
    if not parts.scheme or "://" not in url:
        raise BadInput(f"notification URL {url!r}: not a URL (expected e.g. https://host/hook or slack://...)")
    if is_webhook(url):
        try:
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            raise BadInput(f"notification URL {url!r}: bad port") from None
        if not parts.hostname:
            raise BadInput(f"notification URL {url!r}: no host")
        return url.strip()
    if _apprise_plugin(url.strip()) is None:
        raise BadInput(f"notification URL {url!r}: not a URL Apprise knows (see its list of services)")
    return url.strip()


def check_destinations(urls: Iterable[str]) -> list[str]:
    """Every URL checked (:func:`check_destination`), duplicates dropped, order kept."""
    return list(dict.fromkeys(check_destination(u) for u in urls))


def check_events(names: Iterable[str]) -> list[str]:
    """Event names (``failed`` or ``run.failed``) as their short names; :class:`BadInput` on an unknown one."""
    out = []
    for name in names:
        short = name.removeprefix("run.")
        if short not in NOTIFY_EVENT_NAMES:
            raise BadInput(f"PIPELINE_NOTIFY_EVENTS: unknown event {name!r} (known: {', '.join(NOTIFY_EVENT_NAMES)})")
        out.append(short)
    return list(dict.fromkeys(out))


def redact(url: str) -> str:
    """``url`` without its secrets: a webhook's password and query values; an Apprise URL as
    Apprise prints it privately (tokens shortened, passwords starred)."""
    if not is_webhook(url):
        plugin = _apprise_plugin(url)
        return plugin.url(privacy=True) if plugin is not None else f"{urlsplit(url).scheme}://***"
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{netloc.rsplit('@', 1)[1]}"
    query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def configured(settings: "Settings", extra: Iterable[str] = ()) -> dict[str, tuple[str, ...]]:
    """``notify`` and ``notify_events`` of a :class:`~pipeline.runs.submit.RunRequest`:
    ``PIPELINE_NOTIFY`` plus ``extra`` (``--notify``) and ``PIPELINE_NOTIFY_EVENTS``, checked."""
    return {"notify": tuple(check_destinations([*settings.notify, *extra])),
            "notify_events": tuple(check_events(settings.notify_events))}
