"""Notifications: tell a person when a run fails, recovers or stalls, even when its worker died.

Events are queued by the run ledger itself (pipeline/ledger/notifications.py), atomically
with the state change that causes them, never from inside a stage's task; every worker's
:mod:`pipeline.notify.sender` delivers them. One concern per module: ``destinations``
(URLs: parse, check, redact), ``events`` (the message of an event), ``signing``
(Standard Webhooks), ``delivery`` (one attempt: a webhook or Apprise) and ``sender``
(claim, send, retry). See docs/notifications.md.
"""
