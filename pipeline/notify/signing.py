"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Each request carries ``webhook-id`` (the event id: the same on every retry, so the
receiver can deduplicate), ``webhook-timestamp`` (unix seconds of this attempt) and
``webhook-signature``: ``v1,`` + base64 of HMAC-SHA256 over ``"{id}.{timestamp}.{body}"``
keyed with the secret. A secret written ``whsec_<base64>`` is those decoded bytes, as the
specification says; any other text is used as its UTF-8 bytes.
"""
from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
"""Prefix of a base64-encoded secret, as Standard Webhooks libraries print them."""


def secret_bytes(secret: str) -> bytes:
    """The key bytes of ``secret`` (``whsec_`` + base64, or plain text)."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX):])
    return secret.encode()


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value of one request: ``v1,<base64 HMAC-SHA256>``."""
    digest = hmac.new(secret_bytes(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str | None, msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one request (no signature without a secret)."""
    out = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "content-type": "application/json"}
    if secret:
        out["webhook-signature"] = signature(secret, msg_id, timestamp, body)
    return out


def verify(secret: str, msg_id: str, timestamp: str, body: str, signatures: str) -> bool:
    """True if one of the space-separated ``signatures`` is ours for this request (what a receiver does)."""
    expected = signature(secret, msg_id, int(timestamp), body)
    return any(hmac.compare_digest(expected, s) for s in signatures.split())
