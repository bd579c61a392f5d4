"""`GET /v1/usage/keys/{id}` and `GET /v1/alerts`: what a key did, per minute, hour or
day, and the alerts, each account seeing only its own."""

from __future__ import annotations

import math
import re
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from contracts import format_utc
from contracts.usage import MAX_TOKENS
from servicekit.kafka import KafkaProducer
from services.usage.domain.requests import TOKENS_CAP
from tests.support.accounts import Account, new_account
from tests.support.stack import Stack
from tests.support.usage import (
    create_key,
    known_to_usage,
    now_minute,
    publish,
    record,
    steady,
    wait_alert,
    wait_counted,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack


async def read(
    usage: httpx.AsyncClient, key_id: str, window: dict[str, str], **params: str | int
) -> dict[str, Any]:
    response = await usage.get(f"/v1/usage/keys/{key_id}", params={**window, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def usage(stack: Stack, account: Account) -> httpx.AsyncClient:
    return account.client(base_url=stack.url("usage"))


async def test_a_keys_usage_reads_per_minute_hour_and_day(
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    api: httpx.AsyncClient,
    account: Account,
    usage: httpx.AsyncClient,
) -> None:
    key = await create_key(api)
    start = now_minute(150)
    traffic = [
        *steady(key["id"], account.id, start, 3, 10),
        *steady(key["id"], account.id, start + timedelta(minutes=90), 2, 5, ip="198.51.100.1"),
        record(key["id"], account.id, start + timedelta(minutes=91), status=503),
    ]
    await publish(producer, traffic)
    await wait_counted(db["usage"], key["id"], len(traffic))
    window = {"from": format_utc(start), "to": format_utc(start + timedelta(hours=3))}
    async with usage:
        minutes = await read(usage, key["id"], window, granularity="minute")
        assert [b["requests"] for b in minutes["items"]] == [6, 5, 10, 10, 10]  # newest first
        assert minutes["totals"]["requests"] == 41
        assert minutes["totals"]["status_5xx"] == 1 and minutes["totals"]["tokens_in"] == 41 * 120
        assert minutes["last_used_at"] is not None and minutes["next_cursor"] is None
        hours = await read(usage, key["id"], window)
        assert sum(b["requests"] for b in hours["items"]) == 41
        assert max(b["distinct_networks"] for b in hours["items"]) >= 1
        page = await read(usage, key["id"], window, granularity="minute", limit=2)
        assert [b["requests"] for b in page["items"]] == [6, 5]
        rest = await read(
            usage, key["id"], window, granularity="minute", limit=3, cursor=page["next_cursor"]
        )
        assert [b["requests"] for b in rest["items"]] == [10, 10, 10]
        assert rest["next_cursor"] is None, "a full last page says there is no next one"
        day = await read(usage, key["id"], window, granularity="day")
        assert day["totals"]["requests"] == 41


async def test_another_accounts_key_and_alerts_are_invisible(
    stack: Stack,
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    api: httpx.AsyncClient,
    account: Account,
) -> None:
    key = await create_key(api)
    await publish(producer, [record(key["id"], account.id, now_minute(40 * 24 * 60))])
    await wait_counted(db["usage"], key["id"], 1)
    await publish(producer, [record(key["id"], account.id, now_minute(1))])
    await wait_alert(db["usage"], key["id"], "dormant_key_reactivated")
    other = await new_account(stack)
    async with other.client(base_url=stack.url("usage")) as intruder:
        response = await intruder.get(f"/v1/usage/keys/{key['id']}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        filtered = await intruder.get("/v1/alerts", params={"key_id": key["id"]})
        assert filtered.status_code == 404, "another account's key id answers 404"
        assert filtered.json()["error"]["code"] == "not_found"
    async with account.client(base_url=stack.url("usage")) as owner:
        mine = (await owner.get("/v1/alerts", params={"key_id": key["id"]})).json()
        assert [a["kind"] for a in mine["items"]] == ["dormant_key_reactivated"]
        assert (await owner.get("/v1/alerts", params={"kind": "unused_key"})).json()["items"] == []
        warning = await owner.get("/v1/alerts", params={"severity": "warning", "limit": 1})
        assert warning.json()["items"][0]["severity"] == "warning"


async def test_callers_need_an_accepted_key_with_usage_read(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    verifier = await create_key(api, scopes=["keys:verify"])
    async with httpx.AsyncClient(base_url=stack.url("usage")) as anonymous:
        assert (await anonymous.get("/v1/alerts")).status_code == 401
        bad = await anonymous.get("/v1/alerts", headers={"Authorization": "Bearer ig_live_nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthenticated"
        limited = await anonymous.get(
            "/v1/alerts", headers={"Authorization": f"Bearer {verifier['key']}"}
        )
        assert limited.status_code == 403
        assert limited.json()["error"]["code"] == "insufficient_scope"


async def test_any_window_its_document_allows_is_answered(
    db: dict[str, asyncpg.Connection], api: httpx.AsyncClient, usage: httpx.AsyncClient
) -> None:
    """A window upside down, or at the ends of the times there are, holds no bucket: it is
    answered (empty), neither refused nor a 500."""
    key = await create_key(api)
    await known_to_usage(db["usage"], key["id"])
    now = now_minute()
    async with usage:
        for window in (
            {"to": "0001-01-01T00:00:00Z"},  # 24 hours before it: before the first time
            {"from": "0001-01-01T00:00:00+01:00", "to": "0001-01-01T00:30:00+01:00"},
            {"to": "9999-12-31T23:59:59-23:59"},
            {"from": format_utc(now), "to": format_utc(now - timedelta(hours=1))},
        ):
            body = await read(usage, key["id"], window)
            assert (body["items"], body["totals"]["requests"]) == ([], 0), window


async def test_a_cursor_of_the_documented_shape_always_reads_a_page(
    db: dict[str, asyncpg.Connection], api: httpx.AsyncClient, usage: httpx.AsyncClient
) -> None:
    key = await create_key(api)
    await known_to_usage(db["usage"], key["id"])
    lists = {
        f"/v1/usage/keys/{key['id']}": ["0", "-999999999999999999", "999999999999999999"],
        "/v1/alerts": ["0." + str(uuid.UUID(int=0)), "-999999999999999999." + str(uuid.uuid4())],
    }
    async with usage:
        document = (await usage.get("/openapi.json")).json()
        for path, cursors in lists.items():
            template = path.replace(key["id"], "{key_id}")
            parameters = document["paths"][template]["get"]["parameters"]
            pattern = next(p["schema"]["pattern"] for p in parameters if p["name"] == "cursor")
            for cursor in cursors:
                assert re.fullmatch(pattern, cursor), (path, cursor)
                answer = await usage.get(path, params={"cursor": cursor})
                assert answer.status_code == 200, (path, cursor, answer.text)
            for forged in ("", "not-a-cursor", "MjAyNi0xMS0yNlQxODowMDowMA=="):
                answer = await usage.get(path, params={"cursor": forged})
                assert answer.status_code == 400, (path, forged, answer.text)
                assert answer.json()["error"]["code"] == "bad_cursor"


async def test_the_largest_values_a_record_may_carry_saturate_the_counters(
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    api: httpx.AsyncClient,
    account: Account,
    usage: httpx.AsyncClient,
) -> None:
    """Records at the contract's bounds (2**53 tokens each way, the largest finite latency)
    are valid: every one is counted, by the rollups and by the limit counter, whose sums
    stop at their caps instead of overflowing (an overflow failed the batch, and its valid
    records went to the dead-letter topic). Sums over a batch and over batches both."""
    key = await create_key(api, token_budget={"tokens": MAX_TOKENS, "period": "day"})
    await known_to_usage(db["usage"], key["id"])
    at = datetime.now(UTC)
    largest = record(key["id"], account.id, at).model_copy(
        update={"tokens_in": MAX_TOKENS, "tokens_out": MAX_TOKENS, "latency_ms": sys.float_info.max}
    )
    first, second = 700, 500  # 700 * 2**54 tokens is over a bigint in one batch already
    batches = [
        [largest.model_copy(update={"record_id": uuid.uuid4()}) for _ in range(n)]
        for n in (first, second)
    ]
    await publish(producer, batches[0])
    await wait_counted(db["usage"], key["id"], first)
    await publish(producer, batches[1])
    await wait_counted(db["usage"], key["id"], first + second)

    async def windows() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await db["usage"].fetchrow(
            "SELECT day_requests, day_tokens, month_tokens FROM limit_windows"
            " WHERE key_id = $1 AND day_requests >= $2",
            uuid.UUID(key["id"]),
            first + second,
        )
        return row

    counted = await wait_until(windows, timeout=60, what="the limit counter to count them all")
    assert counted is not None
    assert tuple(counted) == (first + second, TOKENS_CAP, TOKENS_CAP)
    async with usage:
        body = await read(usage, key["id"], {}, granularity="day")
    totals = body["totals"]
    assert totals["requests"] == first + second
    assert (totals["tokens_in"], totals["tokens_out"]) == (TOKENS_CAP, TOKENS_CAP)
    assert totals["latency_max_ms"] == sys.float_info.max
    assert math.isfinite(totals["latency_avg_ms"]) and totals["latency_avg_ms"] > 0
