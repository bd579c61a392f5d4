"""The Python gateway library against the real stack: `Verifier` answers from memory and
learns every change from `keys.events` and `usage.limits`; `UsageReporter` reports what a
gateway served, each request once; the middleware puts both in front of an app."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from instagen_gateway import GatewayMiddleware, UsageReporter, Verifier, record_id_for

from contracts import USAGE_LIMITS, LimitState, LimitWindow, window_bounds
from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account
from tests.support.processes import another_instance
from tests.support.stack import Stack
from tests.support.usage import counted, wait_counted, wait_seen
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack


@pytest.fixture
async def verifier(stack: Stack, account: Account) -> AsyncIterator[Verifier]:
    async with Verifier(stack.url("keys"), account.admin_key, stack.kafka) as running:
        yield running


async def _key(api: httpx.AsyncClient, **attributes: Any) -> dict[str, Any]:
    answer = await api.post("/v1/keys", json={"name": "gateway client", **attributes})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_a_key_disabled_through_the_api_is_refused_from_memory(
    api: httpx.AsyncClient, verifier: Verifier
) -> None:
    key = await _key(api)
    assert (await verifier.verify(key["key"])).valid
    assert (await verifier.verify(key["key"])).valid
    asked = verifier.lookups
    assert asked == 1, "the second answer came from memory"

    disabled = await api.post(f"/v1/keys/{key['id']}/disable", json={"reason": "gateway test"})
    assert disabled.status_code == 200, disabled.text

    async def refused() -> bool:
        return (await verifier.verify(key["key"])).code == "disabled"

    await wait_until(refused, timeout=10, interval=0.01, what="the library refusing the key")


async def test_a_limited_key_is_refused_by_the_library(
    stack: Stack, api: httpx.AsyncClient, verifier: Verifier, producer: KafkaProducer
) -> None:
    key = await _key(api, rate_limit_per_minute=1000)
    first = await verifier.verify(key["key"])
    assert first.valid and first.limits["rate_limit_per_minute"]["limit"] == 1000
    now = datetime.now(UTC)
    _, end = window_bounds("rate_limit_per_minute", None, now)
    until = end + timedelta(minutes=1)  # outlives the minute the test may cross
    state = LimitState(
        key_id=uuid.UUID(key["id"]),
        account_id=first.account_id or "",
        state="rate_limited",
        limit_name="rate_limit_per_minute",
        until=until,
        counted=1000,
        limit=1000,
        as_of=now,
        windows={"rate_limit_per_minute": LimitWindow(counted=1000, limit=1000, reset_at=until)},
    )
    await producer.send_many(
        USAGE_LIMITS, [(key["id"].encode(), state.model_dump_json().encode(), ())]
    )

    async def limited() -> bool:
        return (await verifier.verify(key["key"])).code == "rate_limited"

    await wait_until(limited, timeout=10, interval=0.01, what="the library refusing the key")
    verdict = await verifier.verify(key["key"])
    assert verdict.status == 429 and verdict.retry_after_seconds is not None
    assert 0 < verdict.retry_after_seconds <= (until - datetime.now(UTC)).total_seconds() + 1


async def test_without_the_key_service_known_answers_go_on_for_a_while_then_fail_closed(
    stack: Stack, account: Account, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    key = await _key(api)
    ttl, stale_for = 1.0, 3.0
    async with another_instance(stack, "keys", tmp_path / "keys-b.log") as (b_url, b):
        verifier = Verifier(b_url, account.admin_key, stack.kafka, ttl=ttl, stale_for=stale_for)
        await verifier.start()
        try:
            asked_at = time.monotonic()  # the answer's freshness counts from after this
            assert (await verifier.verify(key["key"])).valid
            b.terminate()
            await asyncio.to_thread(b.wait, 30)
            assert (await verifier.verify(key["key"])).valid  # from memory, the service gone

            async def closed() -> bool:
                return (await verifier.verify(key["key"])).code == "unavailable"

            await wait_until(closed, timeout=30, interval=0.1, what="the library failing closed")
            # Never before the answer was stale for `stale_for` past its freshness.
            assert time.monotonic() - asked_at >= ttl + stale_for
            assert (await verifier.verify(key["key"])).status == 503
        finally:
            await verifier.stop()


async def test_the_reporter_counts_each_gateway_request_once(
    stack: Stack, api: httpx.AsyncClient, db: dict[str, asyncpg.Connection]
) -> None:
    key = await _key(api)
    who = (await api.get(f"/v1/keys/{key['id']}")).json()
    request_ids = [f"req-{uuid.uuid4()}" for _ in range(20)]
    marker = f"marker-{uuid.uuid4()}"
    async with UsageReporter(stack.kafka) as reporter:
        # Five requests retried (reported twice), then a marker: one key, one partition,
        # so once the marker is counted every record before it is too.
        for request_id in [*request_ids, *request_ids[:5], marker]:
            assert reporter.report(
                key_id=key["id"],
                account_id=who["account_id"],
                source_ip="203.0.113.9",
                endpoint="/v1/generate",
                status_code=200,
                latency_ms=12.5,
                request_id=request_id,
                tokens_in=10,
                tokens_out=20,
            )
    assert reporter.sent == 26 and reporter.dropped == 0
    await wait_seen(db["usage"], [uuid.UUID(record_id_for(marker))])
    assert await counted(db["usage"], key["id"]) == 21


async def test_the_middleware_guards_an_app_and_reports_what_it_served(
    stack: Stack, api: httpx.AsyncClient, verifier: Verifier, db: dict[str, asyncpg.Connection]
) -> None:
    key = await _key(api)

    async def model_api(scope: Any, receive: Any, send: Any) -> None:
        scope["state"]["instagen_usage"] = {"tokens_in": 5, "tokens_out": 7, "model": "xl"}
        body = json.dumps({"key_id": scope["state"]["instagen"].key_id}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async with UsageReporter(stack.kafka) as reporter:
        app = GatewayMiddleware(model_api, verifier=verifier, reporter=reporter)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway"
        ) as client:
            refused = await client.post("/v1/generate")
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "missing_key"
            for _ in range(3):
                served = await client.post(
                    "/v1/generate", headers={"Authorization": f"Bearer {key['key']}"}
                )
                assert served.status_code == 200
                assert served.json() == {"key_id": key["id"]}
    await wait_counted(db["usage"], key["id"], 3)
