"""keys_propagation: a disable acknowledged by keys process A, until process B refuses it.

The benchmark starts two keys processes of its own, A and B (both with the verification
cache on, on the stack's broker and database), and creates N keys in a bench account.
For each key, one at a time: verify it on B twice (B now has it cached as valid), disable
it on A over HTTP (t0: the 200 arrived), then poll B's `POST /v1/verify` every
`POLL_INTERVAL_S` until it answers `disabled` (t1). The figure is t1 - t0.

B can only learn of the change from `keys.events` (it reads them with no consumer group)
or from its cache TTL (30 s by default, far longer than any figure here), so the path is:
A's commit -> NOTIFY -> the publisher (whichever keys process holds the advisory lock:
usually the stack's own) sequences and sends -> broker -> B's event subscription drops
the cached entry -> B's next verify reads the database. An independent reader of
`keys.events` in this process times when the event is on the topic: `event_p99_ms` is
the part of the figure spent before B could have known, its floor.

Also checked: A itself refuses the key right after acknowledging the disable (the issue's
promise for the instance that made the change); a miss is counted in params.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any, Final

import httpx
import orjson

from bench import keys_support as ks
from bench.harness import BenchContext, Figure, benchmark
from contracts import KEYS_EVENTS

POLL_INTERVAL_S: Final = 0.002
GIVE_UP_S: Final = 10.0


@benchmark("keys_propagation")
async def keys_propagation(ctx: BenchContext) -> list[Figure]:
    count = ctx.scale(200, 30)
    ctx.note(keys=count, poll_interval_ms=POLL_INTERVAL_S * 1000, give_up_s=GIVE_UP_S)
    stack = ks.endpoints(ctx.bootstrap)
    with ks.workdir("keys-propagation") as work:
        async with ks.bench_account(stack, "propagation") as account:
            return await _run(ctx, stack, work, account, count)


async def _run(
    ctx: BenchContext, stack: ks.StackEndpoints, work: Path, account: ks.BenchAccount, count: int
) -> list[Figure]:
    on_topic: dict[uuid.UUID, float] = {}
    arrived = asyncio.Event()

    def seen(record: Any, read_at: float) -> None:
        event = orjson.loads(record.value)
        if event.get("account_id") == account.id and event.get("event_type") == "KeyDisabled":
            on_topic[uuid.UUID(event["key_id"])] = read_at
            arrived.set()

    async with (
        ks.keys_process(stack, work, "keys-a") as a,
        ks.keys_process(stack, work, "keys-b") as b,
    ):
        keys = await ks.create_keys_http(a.url, account, count, "bench-propagation")
        propagation: list[float] = []
        to_topic: list[float] = []
        a_not_refusing = 0
        async with (
            httpx.AsyncClient(base_url=a.url, headers=account.headers, timeout=10) as on_a,
            httpx.AsyncClient(base_url=b.url, headers=account.headers, timeout=10) as on_b,
            ks.TopicTail(ctx.bootstrap, [KEYS_EVENTS], seen),
        ):
            for key in keys:
                for _ in range(2):
                    if await _code(on_b, key.secret) != "valid":
                        raise RuntimeError(f"key {key.id} is not valid on B before the disable")
                answer = await on_a.post(
                    f"/v1/keys/{key.id}/disable", json={"reason": "propagation benchmark"}
                )
                t0 = time.perf_counter()
                if answer.status_code != 200:
                    raise RuntimeError(f"disable on A: {answer.status_code} {answer.text[:300]}")
                if await _code(on_a, key.secret) != "disabled":
                    a_not_refusing += 1
                while (code := await _code(on_b, key.secret)) != "disabled":
                    if code != "valid" or time.perf_counter() - t0 > GIVE_UP_S:
                        raise RuntimeError(f"B answered {code!r} for {key.id} after the disable")
                    await asyncio.sleep(POLL_INTERVAL_S)
                propagation.append(time.perf_counter() - t0)
                while key.id not in on_topic and time.perf_counter() - t0 < GIVE_UP_S:
                    arrived.clear()
                    await asyncio.wait([asyncio.create_task(arrived.wait())], timeout=0.5)
                if key.id not in on_topic:
                    raise RuntimeError(f"KeyDisabled of {key.id} never seen on {KEYS_EVENTS}")
                to_topic.append(on_topic[key.id] - t0)
        ctx.note(
            a_not_refusing_after_ack=a_not_refusing,
            b_pid=b.pid,
            a_pid=a.pid,
            event_on_topic_ms={
                "p50": round(ks.percentile(to_topic, 50) * 1000, 2),
                "p99": round(ks.percentile(to_topic, 99) * 1000, 2),
                "max": round(max(to_topic) * 1000, 2),
            },
        )

    ms = [s * 1000 for s in propagation]
    topic_ms = [s * 1000 for s in to_topic]
    return [
        Figure(
            "propagation_p99_ms",
            ks.percentile(ms, 99),
            "ms",
            target=250,
            better="lower",
            baseline=ks.percentile(topic_ms, 99),
            baseline_of="keys_propagation/event_p99_ms",
        ),
        Figure(
            "propagation_p50_ms",
            ks.percentile(ms, 50),
            "ms",
            better="lower",
            baseline=ks.percentile(topic_ms, 50),
            baseline_of="keys_propagation/event_p50_ms",
        ),
        Figure("propagation_max_ms", max(ms), "ms", better="lower"),
        Figure("event_p50_ms", ks.percentile(topic_ms, 50), "ms", better="lower"),
        Figure("event_p99_ms", ks.percentile(topic_ms, 99), "ms", better="lower"),
    ]


async def _code(client: httpx.AsyncClient, secret: str) -> str:
    answer = await client.post("/v1/verify", json={"key": secret})
    if answer.status_code != 200:
        raise RuntimeError(f"verify: {answer.status_code} {answer.text[:300]}")
    code: str = answer.json()["code"]
    return code
