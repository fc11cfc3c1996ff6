"""The embedded Redis keeps its port across restarts of the stack (issue 17 item 1), so a
Flower or an extra worker started against it reconnects."""
from __future__ import annotations

import socket

from pipeline.embedded.stack import ensure_stack, stop_stack
from test_embedded import SLEEPER, make_settings, settings  # noqa: F401 (fixtures)


def test_the_stack_comes_back_on_its_previous_port(settings):  # noqa: F811
    first = ensure_stack(settings, SLEEPER)
    assert stop_stack(settings) is True
    again = ensure_stack(settings, SLEEPER)
    assert again.started_now and again.port == first.port and again.url == first.url


def test_a_taken_previous_port_gives_a_free_one(settings):  # noqa: F811
    first = ensure_stack(settings, SLEEPER)
    assert stop_stack(settings) is True
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first.port))
        squatter.listen()
        again = ensure_stack(settings, SLEEPER)
    assert again.started_now and again.port != first.port
