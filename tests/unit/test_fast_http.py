"""servicekit.fast_http against a real uvicorn server and raw sockets: what the protocol
answers itself is framed as uvicorn frames an ASGI answer, and everything it may not or
will not answer reaches the ASGI app whole, in order."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from servicekit.fast_http import Answerer, Asked, FastAnswers, Reply
from servicekit.http import MAX_BODY_BYTES
from tests.support.wait import wait_until

ROUTE = b"/v1/fast"


class App:
    """The ASGI app behind the protocol: answers 200 with what it received."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.gate is not None:
            await self.gate.wait()
        target = scope["path"] + (
            "?" + scope["query_string"].decode() if scope["query_string"] else ""
        )
        self.seen.append((scope["method"], target, body))
        answer = b"app:" + body[:100]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})


class Answers:
    def __init__(self) -> None:
        self.asked: list[Asked] = []
        self.decline = False
        self.fail = False
        self.padding = 0

    def __call__(self, asked: Asked) -> Reply | None:
        self.asked.append(asked)
        if self.fail:
            raise RuntimeError("boom")
        if self.decline:
            return None
        pad = b' "pad": "' + b"x" * self.padding + b'",' if self.padding else b""
        return Reply(
            200, b"{" + pad + b'"fast":' + str(len(asked.body)).encode() + b"}", (("X-Extra", "1"),)
        )


@contextlib.asynccontextmanager
async def server() -> AsyncIterator[tuple[int, App, Answers, uvicorn.Server]]:
    """The port, the ASGI app, the answerer, and the server (for what only its side sees)."""
    app, answers = App(), Answers()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    protocol = FastAnswers.answering(Answerer(frozenset({(b"POST", ROUTE)}), answers))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=protocol, log_config=None, lifespan="on"
    )
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())

    async def started() -> bool:
        assert not task.done(), "the server stopped at start"
        return bool(running.started)

    await wait_until(started, timeout=30, interval=0.01, what="uvicorn to listen")
    try:
        yield port, app, answers, running
    finally:
        running.should_exit = True
        await task


async def exchange(
    port: int, raw: bytes, answers: int = 1
) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Send `raw` at once; read `answers` responses (then whether the server closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return [await asyncio.wait_for(_response(reader), 10) for _ in range(answers)]
    finally:
        writer.close()


async def _response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status, *lines = head[:-4].split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)
    body = await reader.readexactly(int(headers[b"content-length"]))
    return status, headers, body


def post(target: bytes, body: bytes, *extra: bytes, version: bytes = b"1.1") -> bytes:
    head = [
        b"POST " + target + b" HTTP/" + version,
        b"host: x",
        b"content-length: %d" % len(body),
        *extra,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def test_an_answered_request_is_framed_as_uvicorn_frames_one_and_keeps_the_connection() -> (
    None
):
    async with server() as (port, app, answers, _):
        raw = post(ROUTE, b'{"k":1}', b"Authorization: Bearer x")
        (status, headers, body), (again, _, _) = await exchange(port, raw + raw, answers=2)
        assert (status, body, again) == (b"HTTP/1.1 200 OK", b'{"fast":7}', b"HTTP/1.1 200 OK")
        assert headers[b"content-type"] == b"application/json" and headers[b"x-extra"] == b"1"
        assert b"date" in headers and headers[b"server"] == b"uvicorn"
        assert b"connection" not in headers
        assert [a.body for a in answers.asked] == [b'{"k":1}'] * 2 and app.seen == []
        assert (b"authorization", b"Bearer x") in answers.asked[0].headers
        assert answers.asked[0].client == "127.0.0.1"


@pytest.mark.parametrize("mode", ["decline", "fail"])
async def test_what_the_answerer_declines_or_fails_on_reaches_the_app_whole(mode: str) -> None:
    async with server() as (port, app, answers, _):
        setattr(answers, mode, True)
        [(status, _, body)] = await exchange(port, post(ROUTE, b"payload"))
        assert (status, body) == (b"HTTP/1.1 200 OK", b"app:payload")
        assert app.seen == [("POST", "/v1/fast", b"payload")]


@pytest.mark.parametrize(
    ("raw", "target"),
    [
        (post(ROUTE + b"?x=1", b"q"), "/v1/fast?x=1"),
        (post(b"/v1/other", b"q"), "/v1/other"),
        (post(ROUTE, b"q", b"X-Forwarded-For: 198.51.100.7"), "/v1/fast"),
        (post(ROUTE, b"q", b"Forwarded: for=198.51.100.7"), "/v1/fast"),
        (b"PUT /v1/fast HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nq", "/v1/fast"),
    ],
    ids=["query", "other path", "x-forwarded-for", "forwarded", "other method"],
)
async def test_requests_it_may_not_answer_go_to_the_app(raw: bytes, target: str) -> None:
    async with server() as (port, app, answers, _):
        [(status, _, body)] = await exchange(port, raw)
        assert (status, body) == (b"HTTP/1.1 200 OK", b"app:q")
        assert [s[1] for s in app.seen] == [target] and answers.asked == []


async def test_expect_100_continue_gets_its_interim_answer_from_uvicorn() -> None:
    async with server() as (port, app, answers, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                post(ROUTE, b"", b"Expect: 100-continue").replace(b"length: 0", b"length: 4")
            )
            await writer.drain()
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert interim.startswith(b"HTTP/1.1 100")
            writer.write(b"late")
            status, _, body = await asyncio.wait_for(_response(reader), 10)
        finally:
            writer.close()
        assert (status, body, answers.asked) == (b"HTTP/1.1 200 OK", b"app:late", [])
        assert app.seen == [("POST", "/v1/fast", b"late")]


async def test_a_body_past_the_limit_is_streamed_to_the_app() -> None:
    big = b"x" * (MAX_BODY_BYTES + 10)
    async with server() as (port, app, answers, _):
        [(status, _, body)] = await exchange(port, post(ROUTE, big))
        assert (status, body) == (b"HTTP/1.1 200 OK", b"app:" + big[:100])
        assert app.seen == [("POST", "/v1/fast", big)] and answers.asked == []


async def test_a_chunked_body_is_answered_whole() -> None:
    raw = (
        b"POST /v1/fast HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    async with server() as (port, _, answers, _):
        [(status, _, body)] = await exchange(port, raw)
        assert (status, body) == (b"HTTP/1.1 200 OK", b'{"fast":5}')
        assert answers.asked[0].body == b"abcde"


async def test_pipelined_answers_leave_in_the_order_they_were_asked() -> None:
    async with server() as (port, app, answers, _):
        app.gate = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, app.gate.set)  # the app answers late
        raw = post(b"/v1/other", b"slow") + post(ROUTE, b"fast") + post(ROUTE, b"fast2")
        answered = await exchange(port, raw, answers=3)
        assert [body for _, _, body in answered] == [b"app:slow", b"app:fast", b"app:fast2"]
        assert answers.asked == [], "behind a request in flight, uvicorn queues them for the app"


async def test_http_1_0_is_answered_and_closed() -> None:
    async with server() as (port, _, _, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(post(ROUTE, b"{}", version=b"1.0"))
            await writer.drain()
            status, headers, body = await asyncio.wait_for(_response(reader), 10)
            assert await asyncio.wait_for(reader.read(), 10) == b"", "the server closed it"
        finally:
            writer.close()
        assert (status, headers[b"connection"], body) == (
            b"HTTP/1.1 200 OK",
            b"close",
            b'{"fast":2}',
        )


async def test_a_client_that_does_not_read_its_answers_is_not_buffered_without_bound() -> None:
    """Pipelined requests whose answers (32 MB) pass what the kernel's socket buffers
    hold, none of them read: past the transport's high-water mark the rest go uvicorn's
    way, which waits for the client and stops reading meanwhile. Once the client reads,
    every answer arrives, in order."""
    count, padding = 2_000, 16_384
    raw = b"".join(post(ROUTE, b"%d" % i) for i in range(count))
    async with server() as (port, _, answers, running):
        answers.padding = padding
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        try:
            writer.write(raw)
            await asyncio.sleep(1.0)
            (connection,) = running.server_state.connections
            buffered = connection.transport.get_write_buffer_size()
            assert buffered < 1024 * 1024, f"{buffered} bytes of answers held for the client"
            bodies = [(await asyncio.wait_for(_response(reader), 30))[2] for _ in range(count)]
        finally:
            writer.close()
    fast = [b'"fast":%d}' % len(b"%d" % i) for i in range(count)]
    answered = [
        b.endswith(f) or b == b"app:%d" % i
        for i, (b, f) in enumerate(zip(bodies, fast, strict=True))
    ]
    assert all(answered), f"answer {answered.index(False)} is not its request's"
    assert any(b.startswith(b"app:") for b in bodies), "none went uvicorn's way"
