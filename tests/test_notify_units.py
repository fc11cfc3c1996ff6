"""Notifications without a broker: signatures, URL checks and redaction, retry timing."""
from __future__ import annotations

import pytest

from pipeline.notify.delivery import retry_after_seconds
from pipeline.notify.destinations import check_destination, check_events, redact
from pipeline.notify.sender import next_delay
from pipeline.notify.signing import signature, verify
from pipeline.validation import BadInput


def test_the_signature_matches_the_standard_webhooks_example():
    """The example of the Standard Webhooks specification (its README and reference libraries)."""
    got = signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                    '{"test": 2432232314}')
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                  '{"test": 2432232314}', f"v1,other {got}")
    assert not verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_other", "1614265330",
                      '{"test": 2432232314}', got)


@pytest.mark.parametrize("url", ["https://hooks.example.com/x?token=1", "http://127.0.0.1:8080/hook",
                                 "json://127.0.0.1:8080/hook", "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"])
def test_good_destinations_pass(url):
    assert check_destination(url) == url


@pytest.mark.parametrize("url", ["example.com/hook", "http://", "https://h:port/x", "nosuchservice://x", ""])
def test_bad_destinations_are_refused_naming_them(url):
    with pytest.raises(BadInput, match="notification URL"):
        check_destination(url)


def test_unknown_events_are_refused():
    assert check_events(["run.failed", "stuck", "failed"]) == ["failed", "stuck"]
    with pytest.raises(BadInput, match="'fails'"):
        check_events(["fails"])


def test_secrets_are_redacted():
    assert redact("https://u:pw@h.example/p?token=abc&x=1") == "https://u:***@h.example/p?token=***&x=***"
    slack = redact("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ")
    assert slack.startswith("slack://") and "TIiajkdnlazkcOXrIdevi7FQ" not in slack
    assert "pass" not in redact("mailto://user:pass@gmail.com")


def test_backoff_doubles_to_its_cap_and_a_longer_retry_after_wins():
    assert [next_delay(n, 5, 300, None) for n in (1, 2, 3, 7, 8)] == [5, 10, 20, 300, 300]
    assert next_delay(1, 5, 300, 60) == 60 and next_delay(3, 5, 300, 1) == 20
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_scheduled_runs_take_pipeline_notify_and_a_bad_one_does_not_cost_the_run(monkeypatch, tmp_path, caplog):
    from datetime import datetime, timezone

    from pipeline.schedule.tick_runs import tick_request

    tick = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    monkeypatch.setenv("PIPELINE_NOTIFY", "https://hooks.example.com/a, json://127.0.0.1:9/b")
    monkeypatch.setenv("PIPELINE_NOTIFY_EVENTS", "failed succeeded")
    request = tick_request(tick, alphas=["1.0"], artifacts_root=str(tmp_path))
    assert request.notify == ("https://hooks.example.com/a", "json://127.0.0.1:9/b")
    assert request.notify_events == ("failed", "succeeded")
    monkeypatch.setenv("PIPELINE_NOTIFY", "hooks.example.com")
    assert tick_request(tick, alphas=["1.0"], artifacts_root=str(tmp_path)).notify == ()
    assert "'hooks.example.com'" in caplog.text


class _Recorded:
    """A stand-in for the ledger's NotificationBook: remembers each recorded attempt."""

    def __init__(self) -> None:
        self.attempts: list[tuple] = []

    def record_attempt(self, delivery_id, status, error="", next_at=None):
        self.attempts.append((delivery_id, status, error, next_at))


def _sender(max_age: float = 3600.0):
    import types

    from pipeline.notify.sender import Sender
    from pipeline.settings import Settings

    recorded = _Recorded()
    return Sender(types.SimpleNamespace(notifications=recorded), Settings(notify_max_age=max_age)), recorded


def test_a_delivery_is_retried_within_its_max_age_then_given_up():
    import time

    from pipeline.notify.delivery import Outcome

    sender, recorded = _sender(max_age=3600)
    fresh = {"created": repr(time.time()), "attempts": "2", "event": "run.failed", "run_id": "r"}
    sender.record("d1", fresh, Outcome(False, True, "HTTP 503"))
    old = {**fresh, "created": repr(time.time() - 3601)}
    sender.record("d2", old, Outcome(False, True, "HTTP 503"))
    sender.record("d3", fresh, Outcome(False, False, "HTTP 404"))  # not retryable: given up at once
    sender.record("d4", {}, Outcome(False, True, "ConnectionError: Redis"))  # its row unread: retried
    assert [(d, status) for d, status, _e, _n in recorded.attempts] == [
        ("d1", "pending"), ("d2", "failed"), ("d3", "failed"), ("d4", "pending")]
