"""Limits enforced across instances (issue 12): how fast a crossed limit reaches a second
keys instance, and how far traffic overshoots a limit before every verifier knows.

**limits_propagation**: a keys process B of the benchmark's own (cache on) and the stack's
usage service, while filler traffic of other keys runs on `usage.records` at
`FILLER_PER_S`. For each of N keys with `rate_limit_per_hour = LIMIT`: verify on B (valid),
publish the key's `LIMIT` records at once (t0: the broker acknowledged the last, the
crossing record), then poll B until it answers `rate_limited` (t1). The figure is t1 - t0,
next to the time the key's limited state takes to appear on `usage.limits` (its floor: B
cannot know earlier). `LIMIT` is large next to the polls, which are admissions too, so B
refuses because of the state, not because its own polls used the allowance.

**limits_overshoot**: a key with `rate_limit_per_minute = 1000`, driven at 5,000 requests
a minute by 4 concurrent clients, each sending its requests to one of two keys processes in
turn; a client that is let in reports the request on `usage.records`, as a gateway does.
Over one whole UTC minute, the requests admitted against the limit: `admitted - limit` is
the overshoot, to compare with the bound in docs/limits.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from bench import keys_support as ks
from bench import usage_support as us
from bench.harness import BenchContext, Figure, benchmark
from contracts import USAGE_LIMITS, USAGE_RECORDS

FILLER_PER_S: Final = 10_000
LIMIT: Final = 1_000
POLL_INTERVAL_S: Final = 0.005
GIVE_UP_S: Final = 20.0
OVERSHOOT_LIMIT: Final = 1_000
OVERSHOOT_PER_MINUTE: Final = 5_000
CLIENTS: Final = 4


@benchmark("limits_propagation")
async def limits_propagation(ctx: BenchContext) -> list[Figure]:
    count = ctx.scale(30, 5)
    ctx.note(keys=count, limit_per_hour=LIMIT, filler_asked_per_s=FILLER_PER_S)
    stack = ks.endpoints(ctx.bootstrap)
    limited_at: dict[str, float] = {}
    arrived = asyncio.Event()

    def seen(record: Any, read_at: float) -> None:
        state = orjson.loads(record.value)
        if state.get("state") == "rate_limited":
            limited_at.setdefault(state["key_id"], read_at)
            arrived.set()

    with ks.workdir("limits-propagation") as work:
        async with (
            ks.bench_account(stack, "limits") as account,
            ks.keys_process(stack, work, "keys-b") as b,
            _filler(ctx.bootstrap, FILLER_PER_S) as filler,
            ks.TopicTail(ctx.bootstrap, [USAGE_LIMITS], seen),
            httpx.AsyncClient(base_url=b.url, headers=account.headers, timeout=10) as on_b,
            _producer(ctx.bootstrap) as producer,
        ):
            keys = await _create_keys(on_b, account.id, count, {"rate_limit_per_hour": LIMIT})
            propagation: list[float] = []
            to_topic: list[float] = []
            at = datetime.now(UTC)
            for key_id, secret, account_id in keys:
                if (code := await _code(on_b, secret)) != "valid":
                    raise RuntimeError(f"key {key_id} answered {code!r} before its burst")
                burst = [_record(key_id, account_id, at) for _ in range(LIMIT)]
                await asyncio.gather(
                    *[await producer.send(USAGE_RECORDS, value, key=k) for k, value in burst]
                )
                t0 = time.perf_counter()
                while (code := await _code(on_b, secret)) != "rate_limited":
                    if code != "valid" or time.perf_counter() - t0 > GIVE_UP_S:
                        raise RuntimeError(f"B answered {code!r} for {key_id} after its burst")
                    await asyncio.sleep(POLL_INTERVAL_S)
                propagation.append(time.perf_counter() - t0)
                while key_id not in limited_at and time.perf_counter() - t0 < GIVE_UP_S:
                    arrived.clear()
                    await asyncio.wait([asyncio.create_task(arrived.wait())], timeout=0.5)
                if key_id in limited_at:
                    to_topic.append(limited_at[key_id] - t0)
            ctx.note(filler_records_sent=filler.sent, filler_records_per_s=round(filler.rate))

    ms = [s * 1000 for s in propagation]
    topic_ms = [max(s, 0.0) * 1000 for s in to_topic]
    return [
        Figure(
            "propagation_p99_ms",
            ks.percentile(ms, 99),
            "ms",
            target=1000,
            better="lower",
            baseline=ks.percentile(topic_ms, 99) if topic_ms else None,
            baseline_of="limits_propagation/state_on_topic_p99_ms",
        ),
        Figure("propagation_p50_ms", ks.percentile(ms, 50), "ms", better="lower"),
        Figure("propagation_max_ms", max(ms), "ms", better="lower"),
        Figure(
            "state_on_topic_p99_ms",
            ks.percentile(topic_ms, 99) if topic_ms else float("nan"),
            "ms",
            better="lower",
        ),
    ]


@benchmark("limits_overshoot")
async def limits_overshoot(ctx: BenchContext) -> list[Figure]:
    ctx.note(
        limit_per_minute=OVERSHOOT_LIMIT,
        offered_per_minute=OVERSHOOT_PER_MINUTE,
        clients=CLIENTS,
        keys_processes=2,
    )
    stack = ks.endpoints(ctx.bootstrap)
    with ks.workdir("limits-overshoot") as work:
        async with (
            ks.bench_account(stack, "overshoot") as account,
            ks.keys_process(stack, work, "keys-a") as a,
            ks.keys_process(stack, work, "keys-b") as b,
            httpx.AsyncClient(headers=account.headers, timeout=10) as http,
            _producer(ctx.bootstrap) as producer,
        ):
            ((key_id, secret, account_id),) = await _create_keys(
                http, account.id, 1, {"rate_limit_per_minute": OVERSHOOT_LIMIT}, base_url=a.url
            )
            # Start on a minute boundary, so one whole window is driven.
            now = datetime.now(UTC)
            start = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            await asyncio.sleep((start - now).total_seconds())
            end = start + timedelta(minutes=1)
            admitted: list[datetime] = []
            refused: dict[str, int] = {}
            gap = 60.0 / (OVERSHOOT_PER_MINUTE / CLIENTS)
            targets = itertools.cycle([a.url, b.url])

            async def client(offset: float) -> None:
                await asyncio.sleep(offset)
                tick = time.perf_counter()
                while (at := datetime.now(UTC)) < end:
                    answer = await http.post(f"{next(targets)}/v1/verify", json={"key": secret})
                    code = answer.json()["code"]
                    if code == "valid":
                        admitted.append(at)
                        key, value = _record(key_id, account_id, at)
                        await producer.send(USAGE_RECORDS, value, key=key)
                    else:
                        refused[code] = refused.get(code, 0) + 1
                    tick += gap
                    await asyncio.sleep(max(0.0, tick - time.perf_counter()))

            await asyncio.gather(*(client(i * gap / CLIENTS) for i in range(CLIENTS)))
            await producer.flush()
    in_window = sum(1 for at in admitted if start <= at < end)
    ctx.note(refused=refused, offered=len(admitted) + sum(refused.values()))
    return [
        Figure("admitted_in_window", in_window, "requests", better="lower"),
        Figure(
            "overshoot",
            in_window - OVERSHOOT_LIMIT,
            "requests",
            better="lower",
            baseline=OVERSHOOT_LIMIT,
            baseline_of="limits_overshoot/limit",
        ),
    ]


# --- support ----------------------------------------------------------------------------------
class _Filler:
    sent = 0
    began = 0.0

    @property
    def rate(self) -> float:
        """Records per second sent so far."""
        return self.sent / max(time.perf_counter() - self.began, 1e-9)


@contextlib.asynccontextmanager
async def _filler(bootstrap: str, per_second: int) -> AsyncIterator[_Filler]:
    """Records of 1,000 other keys on usage.records at `per_second`, until the block ends."""
    pool = us.key_pool(1_000, "bench-filler")
    rng = random.Random(11)  # noqa: S311 - synthetic traffic
    filler = _Filler()
    stop = asyncio.Event()

    async def run() -> None:
        async with _producer(bootstrap) as producer:
            began = filler.began = time.perf_counter()
            while not stop.is_set():
                at = datetime.now(UTC)
                batch = [
                    # a twentieth of a second's records at a time
                    us.usage_record(key, at, rng)
                    for key in rng.choices(pool, k=per_second // 20)
                ]
                for key, value in batch:
                    await producer.send(USAGE_RECORDS, value, key=key)
                filler.sent += len(batch)
                await asyncio.sleep(
                    max(0.0, filler.sent / per_second - (time.perf_counter() - began))
                )
            await producer.flush()

    task = asyncio.create_task(run())
    try:
        yield filler
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def _producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **us.FAST_PRODUCER)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def _record(key_id: str, account_id: str, at: datetime) -> tuple[bytes, bytes]:
    value = {
        "record_id": str(uuid.uuid4()),
        "key_id": key_id,
        "account_id": account_id,
        "occurred_at": at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "source_ip": "203.0.113.7",
        "user_agent": "bench-limits",
        "endpoint": "/v1/generate",
        "model": "instagen-xl",
        "status_code": 200,
        "tokens_in": 100,
        "tokens_out": 400,
        "latency_ms": 120.0,
    }
    return key_id.encode(), orjson.dumps(value)


async def _create_keys(
    http: httpx.AsyncClient,
    account_id: str,
    count: int,
    limits: dict[str, Any],
    base_url: str | None = None,
) -> Sequence[tuple[str, str, str]]:
    """(key id, secret, account id) of `count` new keys with `limits`."""
    url = f"{base_url or ''}/v1/keys"
    keys = []
    for i in range(count):
        answer = await http.post(url, json={"name": f"bench-limits-{i}", **limits})
        if answer.status_code != 201:
            raise RuntimeError(f"create key: {answer.status_code} {answer.text[:300]}")
        body = answer.json()
        keys.append((body["id"], body["key"], account_id))
    return keys


async def _code(client: httpx.AsyncClient, secret: str) -> str:
    answer = await client.post("/v1/verify", json={"key": secret})
    if answer.status_code != 200:
        raise RuntimeError(f"verify: {answer.status_code} {answer.text[:300]}")
    code: str = answer.json()["code"]
    return code
