"""Answers given by the HTTP server's protocol itself, before ASGI, for the few requests
a service answers from memory at a gateway's rate (the keys service's `POST /v1/verify`).

Under uvicorn an ASGI answer costs about 30 us of CPU before the app does anything: a
task per request, the receive and send coroutines, a write for the head and another for
the body. `FastAnswers` is uvicorn's own httptools protocol; for a request it may answer
(`Answerer.routes`, nothing else in flight on the connection, nothing the ASGI stack
would treat specially) it holds the body, asks the answerer synchronously, and writes
the whole answer at once. Whatever the answerer declines (it returns None: it would have
to wait, e.g. for a database lookup), whatever raises, and every request it may not
answer go to the ASGI app exactly as uvicorn would have sent them: the parser's
callbacks are replayed. HTTP itself (parsing, keep-alive, HTTP/1.0, pipelining,
timeouts, the Date and Server headers) stays uvicorn's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from servicekit.http import MAX_BODY_BYTES
from servicekit.logging import get_logger

log = get_logger(__name__)

_ASGI_ONLY = frozenset(
    {b"expect", b"upgrade", b"x-forwarded-for", b"x-forwarded-proto", b"forwarded"}
)
"""Headers whose handling belongs to uvicorn's cycle or its proxy-headers middleware."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    """JSON."""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Asked:
    headers: list[tuple[bytes, bytes]]
    """As uvicorn gives them to ASGI: names lowercase."""
    body: bytes
    client: str | None


@dataclass(frozen=True, slots=True)
class Answerer:
    routes: frozenset[tuple[bytes, bytes]]
    """(method, target) pairs it may answer: the request target exactly as sent (a query
    string, or another spelling of the path, goes to the app)."""
    answer: Callable[[Asked], Reply | None]


class FastAnswers(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering `answerer`'s routes itself when it can."""

    answerer: ClassVar[Answerer]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: list[bytes] | None = None
        self._held_size = 0
        self._closing = False

    @classmethod
    def answering(cls, answerer: Answerer) -> type[FastAnswers]:
        """The protocol class for uvicorn's `http` setting."""
        return type("FastAnswersFor", (cls,), {"answerer": answerer})

    def on_message_begin(self) -> None:
        # A request that follows a fast answer in the same read: that answer armed the
        # keep-alive timer, which must not close the connection under this request.
        self._unset_keepalive_if_required()
        self._held = None
        self._held_size = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self._may_answer():
            self._held = []
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        held = self._held
        if held is None:
            super().on_body(body)
            return
        held.append(body)
        self._held_size += len(body)
        if self._held_size > MAX_BODY_BYTES:  # the app answers it (413), streamed as usual
            self._held = None
            self._pass_on(held, complete=False)

    def on_message_complete(self) -> None:
        held = self._held
        if held is None:
            super().on_message_complete()
            return
        self._held = None
        body = b"".join(held)
        reply = None
        try:
            reply = self.answerer.answer(
                Asked(self.headers, body, self.client[0] if self.client else None)
            )
        except Exception as exc:  # the app's route answers it, with its error handlers
            log.warning("fast_answer_failed", error=type(exc).__name__)
        if reply is None:
            self._pass_on([body], complete=True)
            return
        self._write(reply)

    def shutdown(self) -> None:
        if self._held is not None:  # a request being read: answered, then closed
            self._closing = True
            return
        super().shutdown()

    def _may_answer(self) -> bool:
        if (self.cycle is not None and not self.cycle.response_complete) or self.pipeline:
            return False  # the answers must leave in order: uvicorn queues this one
        if self.flow.write_paused:
            # A client that sends without reading its answers: uvicorn's cycle waits for
            # the transport to drain and stops reading meanwhile, which bounds the memory.
            return False
        if self.limit_concurrency is not None or self.parser.should_upgrade():
            return False
        if (self.parser.get_method(), self.url) not in self.answerer.routes:
            return False  # a query string, or a path written otherwise, too
        return not any(name in _ASGI_ONLY for name, _ in self.headers)

    def _pass_on(self, body: list[bytes], complete: bool) -> None:
        """To the ASGI app, as if the parser had called uvicorn's protocol."""
        super().on_headers_complete()
        joined = b"".join(body)
        if joined:
            super().on_body(joined)
        if complete:
            super().on_message_complete()

    def _write(self, reply: Reply) -> None:
        keep_alive = (
            not self._closing
            and self.parser.get_http_version() != "1.0"
            and self.parser.should_keep_alive()
        )
        content = [STATUS_LINE[reply.status]]
        for name, value in self.server_state.default_headers:
            content += [name, b": ", value, b"\r\n"]
        content += [
            b"content-type: application/json\r\ncontent-length: ",
            str(len(reply.body)).encode(),
            b"\r\n",
        ]
        for header, text in reply.headers:
            content += [header.lower().encode(), b": ", text.encode(), b"\r\n"]
        if not keep_alive:
            content.append(b"connection: close\r\n")
        content += [b"\r\n", reply.body]
        self.transport.write(b"".join(content))
        self.server_state.total_requests += 1
        if not keep_alive:
            self.transport.close()
        elif not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
