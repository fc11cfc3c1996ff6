"""One delivery attempt: POST a signed webhook, or hand the message to Apprise.

Returns an :class:`Outcome`, never raises: a notification's failure is recorded, not
raised. Retried: timeouts, connection errors, 5xx and 429 (with the ``Retry-After`` the
receiver asked for); not retried: any other 4xx (the request itself is wrong).
"""
from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pipeline.notify import signing
from pipeline.notify.destinations import is_webhook
from pipeline.notify.events import event_text

USER_AGENT = "pipeline-notify/1"
"""The ``User-Agent`` of webhook requests."""


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    delivered: bool
    retry: bool = False
    """Worth another attempt (timeout, connection error, 5xx, 429, an Apprise failure)."""
    error: str = ""
    retry_after: float | None = None
    """Seconds the receiver asked to wait (``Retry-After``), if it did."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from now; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@`` (urllib sends none of it), and the Basic
    ``Authorization`` header they stand for (None without them)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, "")), "Basic " + base64.b64encode(pair).decode()


def post_webhook(url: str, msg_id: str, body: str, secret: str | None, timeout: float) -> Outcome:
    """POST ``body`` to ``url`` with the Standard Webhooks headers of this attempt."""
    heads = {**signing.headers(secret, msg_id, int(time.time()), body), "user-agent": USER_AGENT}
    url, auth = split_credentials(url)
    if auth:
        heads["authorization"] = auth
    request = urllib.request.Request(url, data=body.encode(), headers=heads, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
        return Outcome(True)
    except urllib.error.HTTPError as exc:
        retry = exc.code >= 500 or exc.code == 429
        return Outcome(False, retry, f"HTTP {exc.code} {exc.reason}", retry_after_seconds(exc.headers.get("Retry-After")))
    except Exception as exc:  # timeouts, refused connections, DNS, TLS: all worth a retry
        reason = getattr(exc, "reason", None) or exc
        return Outcome(False, True, f"{type(exc).__name__}: {reason}")


def notify_apprise(url: str, event: dict[str, Any]) -> Outcome:
    """Send ``event``'s text through Apprise (it reports only success or failure: failure is retried)."""
    import apprise

    title, text = event_text(event)
    sender = apprise.Apprise()
    if not sender.add(url):
        return Outcome(False, False, "Apprise does not accept this URL")
    try:
        ok = sender.notify(title=title, body=text)
    except Exception as exc:
        return Outcome(False, True, f"{type(exc).__name__}: {exc}")
    return Outcome(True) if ok else Outcome(False, True, "Apprise reported a failed notification (see the worker log)")


def attempt(url: str, msg_id: str, body: str, secret: str | None, timeout: float) -> Outcome:
    """One attempt to deliver ``body`` (the event's JSON) to ``url``."""
    if is_webhook(url):
        return post_webhook(url, msg_id, body, secret, timeout)
    return notify_apprise(url, json.loads(body))
