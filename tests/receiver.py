"""A webhook receiver of the test's own: an HTTP server on 127.0.0.1 that records every request.

It answers with the statuses it is given, in order (then 200), each optionally with a
``Retry-After``; it can be started late on a port reserved beforehand (a receiver that
was down).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    """One request as the receiver saw it."""

    at: float
    path: str
    headers: dict[str, str]
    body: str

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records requests to ``http://127.0.0.1:<port>/...``; answers ``answers`` in turn, then 200."""

    port: int
    answers: list[tuple[int, str | None]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "Receiver":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                owner.received.append(Received(time.time(), self.path, {k.lower(): v for k, v in self.headers.items()},
                                               body))
                status, retry_after = owner.answers.pop(0) if owner.answers else (200, None)
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
