"""A real nginx (Debian's) in front of the sample model API, asking the keys service's
forward-auth endpoint about every request: what a client of the gateway sees, what the
model API learns, and what the usage service counts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from instagen_gateway import UsageReporter

from contracts import USAGE_LIMITS, LimitState, LimitWindow, window_bounds
from devstack import gateway as local_gateway
from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account
from tests.support.keys_processes import another_keys_instance
from tests.support.stack import Stack
from tests.support.usage import counted, wait_seen
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack


@pytest.fixture(scope="session")
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """nginx and the sample API, started as `make gateway` does (left running for
    `make down`, like the rest of the stack)."""
    await asyncio.to_thread(local_gateway.start, stack.kafka, stack.database_url)
    await local_gateway.wait_ready()
    async with httpx.AsyncClient(base_url=local_gateway.gateway_url(), timeout=15) as client:
        yield client


async def _key(api: httpx.AsyncClient, **attributes: Any) -> dict[str, Any]:
    answer = await api.post("/v1/keys", json={"name": "behind nginx", **attributes})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _bearer(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


def _record_id(response: httpx.Response) -> uuid.UUID:
    """The usage record of a request: nginx's request id (32 hex digits) as a UUID."""
    return uuid.UUID(response.headers["x-request-id"])


async def test_a_request_without_a_key_is_refused_with_the_json_error(
    gateway: httpx.AsyncClient,
) -> None:
    for headers in ({}, {"Authorization": "Bearer ig_live_not-a-key"}):
        answer = await gateway.post("/v1/generate", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["error"]["code"] in ("missing_key", "malformed")


async def test_a_valid_key_reaches_the_model_api_which_learns_the_key_not_the_secret(
    gateway: httpx.AsyncClient, api: httpx.AsyncClient, account: Account
) -> None:
    key = await _key(api, scopes=["keys:verify"])
    for headers in (_bearer(key), {"X-Api-Key": key["key"]}):
        answer = await gateway.post("/v1/generate", headers=headers)
        assert answer.status_code == 200, answer.text
        seen = answer.json()["gateway"]
        assert seen["x-key-id"] == key["id"]
        assert seen["x-account-id"] == account.id
        assert seen["x-key-environment"] == "production"
        assert seen["x-key-scopes"] == "keys:verify"
        assert seen["x-request-id"] == answer.headers["x-request-id"]
        assert answer.json()["authorization_seen"] is False


async def test_a_key_disabled_on_another_keys_instance_is_refused_by_nginx(
    stack: Stack, gateway: httpx.AsyncClient, api: httpx.AsyncClient, account: Account,
    tmp_path: Path,
) -> None:  # fmt: skip
    key = await _key(api)
    assert (await gateway.get("/v1/models", headers=_bearer(key))).status_code == 200
    async with (
        another_keys_instance(stack, tmp_path / "keys-b.log") as b_url,
        account.client(b_url) as on_b,
    ):
        disabled = await on_b.post(f"/v1/keys/{key['id']}/disable", json={"reason": "nginx"})
        assert disabled.status_code == 200, disabled.text

    async def refused() -> bool:
        answer = await gateway.get("/v1/models", headers=_bearer(key))
        return answer.status_code == 401 and answer.json()["error"]["code"] == "disabled"

    # The figure (within 1 s) is make bench's; the deadline here is for a loaded machine.
    await wait_until(refused, timeout=10, interval=0.02, what="nginx refusing the key")


async def test_a_key_over_its_limit_is_answered_429_with_retry_after(
    gateway: httpx.AsyncClient, api: httpx.AsyncClient, producer: KafkaProducer
) -> None:
    key = await _key(api, rate_limit_per_day=1000)
    first = await gateway.post("/v1/generate", headers=_bearer(key))
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-limit"] == "1000"
    assert int(first.headers["x-ratelimit-remaining"]) <= 999
    # The usage service's word that the key used its day (as it publishes it).
    now = datetime.now(UTC)
    _, day_end = window_bounds("rate_limit_per_day", None, now)
    state = LimitState(
        key_id=uuid.UUID(key["id"]),
        account_id=key["account_id"],
        state="rate_limited",
        limit_name="rate_limit_per_day",
        until=day_end,
        counted=1000,
        limit=1000,
        as_of=now,
        windows={"rate_limit_per_day": LimitWindow(counted=1000, limit=1000, reset_at=day_end)},
    )
    await producer.send_many(
        USAGE_LIMITS, [(key["id"].encode(), state.model_dump_json().encode(), ())]
    )

    async def limited() -> list[httpx.Response]:
        answer = await gateway.post("/v1/generate", headers=_bearer(key))
        return [answer] if answer.status_code == 429 else []

    (refused,) = await wait_until(limited, timeout=10, interval=0.02, what="nginx answering 429")
    assert refused.json()["error"]["code"] == "rate_limited"
    retry_after = int(refused.headers["retry-after"])
    assert 0 < retry_after <= (day_end - datetime.now(UTC)).total_seconds() + 1


async def test_a_key_outside_its_networks_is_answered_403(
    gateway: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    outside = await _key(api, allowed_cidrs=["203.0.113.0/24", "2001:db8::/32"])
    refused = await gateway.post("/v1/generate", headers=_bearer(outside))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "ip_not_allowed"
    inside = await _key(api, allowed_cidrs=["127.0.0.0/8"])
    assert (await gateway.post("/v1/generate", headers=_bearer(inside))).status_code == 200


async def test_usage_counts_exactly_the_requests_nginx_served_once_each(
    stack: Stack,
    gateway: httpx.AsyncClient,
    api: httpx.AsyncClient,
    account: Account,
    db: dict[str, asyncpg.Connection],
) -> None:
    """Forward auth reports each request it lets in, keyed by nginx's request id; a
    gateway (or the model API) that reports the same request too changes nothing."""
    key = await _key(api)
    served = [await gateway.post("/v1/generate", headers=_bearer(key)) for _ in range(7)]
    assert [r.status_code for r in served] == [200] * 7
    async with UsageReporter(stack.kafka) as reporter:
        for response in served[:3]:  # the model API reports three of them itself
            reporter.report(
                key_id=key["id"],
                account_id=account.id,
                source_ip="127.0.0.1",
                endpoint="/v1/generate",
                status_code=200,
                latency_ms=3.0,
                request_id=response.headers["x-request-id"],
            )
    marker = await gateway.post("/v1/generate", headers=_bearer(key))  # after them all
    await wait_seen(db["usage"], [_record_id(marker)])
    assert await counted(db["usage"], key["id"]) == 8
