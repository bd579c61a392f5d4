"""webhook_delivery: from an alert on the topic to its signed delivery at a receiver.

A usage process of its own (allowed to post over http to 127.0.0.1) reads a scratch
alerts topic; one webhook of a bench account points at a receiver run here (a plain
asyncio HTTP server answering 200 at once). First one alert at a time (`PROBES`, each
sent after the previous one arrived): the latency from the publish to the arrival.
Then a burst of `BURST` alerts at once: deliveries per second until the last arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import asyncpg

from bench.harness import BenchContext, Figure, benchmark
from bench.scratch_topic import scratch_topic
from bench.usage_support import poll_until, produce, usage_process
from contracts import Alert, AlertWindow

PARTITIONS: Final = 3


class Receiver:
    """Counts the deliveries it was sent, by their InstaGen-Delivery-Id."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                fields = dict(
                    line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line
                )
                await reader.readexactly(int(fields.get("content-length", "0")))
                self.arrived[fields["instagen-delivery-id"]] = time.perf_counter()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def receiving() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield receiver, f"http://127.0.0.1:{port}/hook"


def alert(account: str) -> tuple[str, bytes, bytes]:
    now = datetime.now(UTC)
    found = Alert(
        alert_id=uuid.uuid4(), key_id=uuid.uuid4(), account_id=account,
        kind="disabled_key_in_use", severity="critical", detected_at=now,
        window=AlertWindow(from_=now, to=now), observed=1, expected=0,
        summary="A disabled key was tried.",
    )  # fmt: skip
    return str(found.alert_id), str(found.key_id).encode(), found.model_dump_json().encode()


@benchmark("webhook_delivery")
async def webhook_delivery(ctx: BenchContext) -> list[Figure]:
    probes, burst = ctx.scale(50, 10), ctx.scale(2000, 200)
    account = f"bench-{uuid.uuid4().hex[:6]}"
    ctx.note(probes=probes, burst=burst, receiver="asyncio, answers 200 at once, keep-alive")
    async with (
        scratch_topic(ctx.bootstrap, "bench.usage.alerts", PARTITIONS) as alerts,
        scratch_topic(ctx.bootstrap, "bench.usage.records", PARTITIONS) as records,
        scratch_topic(ctx.bootstrap, "bench.usage.events", PARTITIONS) as events,
        receiving() as (receiver, url),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            async with usage_process(
                ctx.bootstrap, records, events, Path(tmp) / "usage.log",
                USAGE_WEBHOOKS_ALERTS_TOPIC=alerts, USAGE_WEBHOOKS_ALLOW_HTTP="true",
                USAGE_WEBHOOKS_ALLOW_PRIVATE="true",
                USAGE_WEBHOOKS_CONSUMER_GROUP=f"bench-webhooks-{uuid.uuid4().hex[:8]}",
            ) as usage:  # fmt: skip
                conn = await asyncpg.connect(usage.database)
                try:
                    await conn.execute(
                        "INSERT INTO webhooks (webhook_id, account_id, url, kinds, min_severity,"
                        " min_rank, secret) VALUES ($1, $2, $3, '{}', 'info', 0, $4)",
                        uuid.uuid4(), account, url, "whsec_bench",
                    )  # fmt: skip
                finally:
                    await conn.close()
                latencies = []
                for _ in range(probes):
                    alert_id, key, body = alert(account)
                    sent = time.perf_counter()
                    await produce(ctx.bootstrap, alerts, [(key, body)])
                    await poll_until(_arrived(receiver, [alert_id]), timeout=60, interval=0.005)
                    latencies.append(receiver.arrived[alert_id] - sent)
                many = [alert(account) for _ in range(burst)]
                began = time.perf_counter()
                await produce(ctx.bootstrap, alerts, [(k, b) for _, k, b in many])
                await poll_until(_arrived(receiver, [i for i, _, _ in many]), timeout=600)
                took = max(receiver.arrived[i] for i, _, _ in many) - began
    cuts = statistics.quantiles(latencies, n=20)
    return [
        ctx.figure("delivery_latency_p50_ms", statistics.median(latencies) * 1000, "ms",
                   better="lower"),
        ctx.figure("delivery_latency_p95_ms", cuts[18] * 1000, "ms", target=5000,
                   better="lower"),
        ctx.figure("burst_deliveries_per_s", burst / took, "deliveries/s"),
    ]  # fmt: skip


def _arrived(receiver: Receiver, alert_ids: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all(i in receiver.arrived for i in alert_ids)

    return check
