"""A webhook receiver the tests run: a real HTTP server on 127.0.0.1, answering each
request with the next status a test queued (200 once the queue is empty), and keeping
what it was sent. Its signature check is the one docs/webhooks.md gives receivers."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Delivered:
    at: float
    """time.time() when it arrived."""
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    url: str
    answers: list[int] = field(default_factory=list)
    received: list[Delivered] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *statuses: int) -> None:
        with self.lock:
            self.answers[:] = list(statuses)

    def taken(self) -> list[Delivered]:
        with self.lock:
            return list(self.received)

    def _take(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            status = self.answers.pop(0) if self.answers else 200
            self.received.append(Delivered(time.time(), headers, body, status))
            return status


@contextlib.contextmanager
def receiver(path: str = "/hooks/instagen") -> Iterator[Receiver]:
    state: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = state[0]._take({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}{path}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        server.shutdown()
        server.server_close()


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """As docs/webhooks.md tells receivers: the HMAC over "t.body", t within tolerance."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), given)
