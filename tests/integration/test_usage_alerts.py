"""Each kind of alert, end to end: normal traffic for a key, then the anomaly, then
exactly one alert of that kind for that key, in the usage database, on `usage.alerts`
and through `GET /v1/alerts`. Time is simulated through the records' occurred_at."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import httpx
import pytest

from contracts import USAGE_ALERTS, Alert
from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account
from tests.support.kafka import TopicTail
from tests.support.processes import SERVICE
from tests.support.stack import Stack
from tests.support.usage import (
    alerts_of,
    create_key,
    hour_start,
    known_to_usage,
    now_minute,
    publish,
    record,
    steady,
    wait_alert,
    wait_counted,
    wait_seen,
)

pytestmark = pytest.mark.stack


async def only_alert(
    db: asyncpg.Connection, key_id: str, kind: str, total: int
) -> list[tuple[str, str]]:
    """The key's alerts once its `total` requests are counted (an alert is stored in the
    transaction that counts the request raising it, so none can come later)."""
    await wait_alert(db, key_id, kind)
    await wait_counted(db, key_id, total)
    found = await alerts_of(db, key_id)
    assert [k for k, _ in found if k == kind] == [kind], found
    return found


async def test_a_volume_spike_raises_one_alert_that_says_seen_against_expected(
    stack: Stack,
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    api: httpx.AsyncClient,
    account: Account,
) -> None:
    key = await create_key(api)
    # The summary names the key, which the usage service learns from keys.events: a
    # different topic than the traffic, so wait until it knows the key.
    await known_to_usage(db["usage"], key["id"])
    start = now_minute(120)
    normal = steady(key["id"], account.id, start, 45, 20)
    spike = steady(key["id"], account.id, start + timedelta(minutes=45), 1, 300)
    after = steady(key["id"], account.id, start + timedelta(minutes=46), 5, 20)
    async with TopicTail(stack.kafka, USAGE_ALERTS) as tail:
        await publish(producer, normal + spike + after)
        records = await tail.collect(
            lambda rs: any(r.key == key["id"].encode() for r in rs), timeout=60
        )
    mine = next(r.value for r in records if r.key == key["id"].encode())
    alert = Alert.model_validate_json(mine or b"")
    assert (alert.kind, alert.severity) == ("volume_spike", "warning")
    assert alert.observed == 101 and alert.expected == pytest.approx(20, abs=2)
    assert alert.evidence["threshold"] == 100
    assert alert.window.from_ == start + timedelta(minutes=45)
    assert "usage scenario" in alert.summary
    await wait_counted(db["usage"], key["id"], len(normal + spike + after))
    assert await alerts_of(db["usage"], key["id"]) == [("volume_spike", "warning")]


async def test_more_requests_than_the_declared_hourly_limit_raise_one_alert(
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    api: httpx.AsyncClient,
    account: Account,
) -> None:
    key = await create_key(api, rate_limit_per_hour=100)
    await known_to_usage(db["usage"], key["id"])
    # The limit is passed 25 minutes into the burst and stays passed to its end: the whole
    # burst lies in one cooldown hour (H-90' to H-60'), or a second hour would re-alert.
    start = hour_start(3)
    normal = steady(key["id"], account.id, start, 40, 2)  # 80 in the first hour
    burst = steady(key["id"], account.id, start + timedelta(minutes=90), 30, 4)  # 120 in 30'
    await publish(producer, normal + burst)
    total = len(normal + burst)
    assert await only_alert(db["usage"], key["id"], "rate_limit_exceeded", total) == [
        ("rate_limit_exceeded", "warning")
    ]


async def test_a_network_never_seen_before_raises_one_alert_for_a_key_with_history(
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    api: httpx.AsyncClient,
    account: Account,
) -> None:
    key = await create_key(api)
    history = [
        *steady(key["id"], account.id, now_minute(3 * 24 * 60), 15, 3),
        *steady(key["id"], account.id, now_minute(2 * 24 * 60), 15, 3),
        *steady(key["id"], account.id, now_minute(60), 5, 3),
    ]
    new = [
        record(key["id"], account.id, now_minute(10), ip="198.51.100.9"),
        record(key["id"], account.id, now_minute(9), ip="198.51.100.200"),
    ]
    await publish(producer, history + new)
    found = await only_alert(db["usage"], key["id"], "new_source_network", len(history + new))
    assert found == [("new_source_network", "warning")]


async def test_a_burst_of_refusals_raises_one_alert(
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    api: httpx.AsyncClient,
    account: Account,
) -> None:
    key = await create_key(api)
    await known_to_usage(db["usage"], key["id"])
    start = now_minute(60)
    normal = steady(key["id"], account.id, start, 20, 5)
    refused = steady(key["id"], account.id, start + timedelta(minutes=20), 1, 40, status=401)
    await publish(producer, normal + refused)
    total = len(normal + refused)
    assert await only_alert(db["usage"], key["id"], "auth_failure_burst", total) == [
        ("auth_failure_burst", "warning")
    ]


async def test_trying_a_disabled_key_raises_one_critical_alert(
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    api: httpx.AsyncClient,
    account: Account,
) -> None:
    key = await create_key(api)
    await publish(producer, steady(key["id"], account.id, now_minute(30), 10, 5))
    disabled = await api.post(f"/v1/keys/{key['id']}/disable", json={"reason": "rotation"})
    assert disabled.status_code == 200, disabled.text
    # The leaked secret is still tried: the keys service refuses it and reports the refusal.
    for _ in range(3):
        verdict = await api.post("/v1/verify", json={"key": key["key"]})
        assert verdict.json()["code"] == "disabled"
    # 50 published requests, and the 3 refusals the keys service reports.
    found = await only_alert(db["usage"], key["id"], "disabled_key_in_use", 50 + 3)
    assert found == [("disabled_key_in_use", "critical")]
    listed = await _list_alerts(account, key_id=key["id"], kind="disabled_key_in_use")
    assert listed[0]["evidence"]["key_status"] == "disabled"
    assert listed[0]["evidence"]["status_code"] in (401, None)


async def test_a_key_used_again_after_forty_idle_days_raises_one_alert(
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    api: httpx.AsyncClient,
    account: Account,
) -> None:
    key = await create_key(api)
    old = steady(key["id"], account.id, now_minute(40 * 24 * 60), 10, 3)
    await publish(producer, old)
    await wait_counted(db["usage"], key["id"], len(old))
    recent = steady(key["id"], account.id, now_minute(5), 3, 3)
    await publish(producer, recent)
    total = len(old + recent)
    found = await only_alert(db["usage"], key["id"], "dormant_key_reactivated", total)
    assert found == [("dormant_key_reactivated", "warning")]
    listed = await _list_alerts(account, key_id=key["id"])
    assert listed[0]["observed"] >= 39


async def test_hours_of_normal_traffic_raise_no_alert(
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    api: httpx.AsyncClient,
    account: Account,
) -> None:
    key = await create_key(api, rate_limit_per_hour=3000)
    await known_to_usage(db["usage"], key["id"])
    start = now_minute(6 * 60 + 10)
    traffic = []
    for minute in range(6 * 60):  # six hours, 10 to 25 a minute, three client networks
        per_minute = 10 + (minute * 7) % 16
        ip = ("203.0.113.7", "198.51.100.20", "192.0.2.33")[minute % 3]
        at = start + timedelta(minutes=minute)
        traffic += steady(key["id"], account.id, at, 1, per_minute, ip=ip)
    traffic += [record(key["id"], account.id, now_minute(1), status=401) for _ in range(5)]
    await publish(producer, traffic)
    await wait_counted(db["usage"], key["id"], len(traffic))
    assert await alerts_of(db["usage"], key["id"]) == []


async def test_a_record_delivered_twice_is_counted_once(
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    api: httpx.AsyncClient,
    account: Account,
) -> None:
    key = await create_key(api)
    # Within the dedup horizon (15 minutes of event time, USAGE_DEDUP_HORIZON_MINUTES):
    # a redelivery later than that would be counted again, as docs/usage-detectors.md says.
    records = steady(key["id"], account.id, now_minute(6), 2, 10)
    await publish(producer, records + records[:7])
    marker = record(key["id"], account.id, now_minute(1))
    await publish(producer, [*records[5:9], marker])
    await wait_counted(db["usage"], key["id"], len(records) + 1)
    await wait_seen(db["usage"], [marker.record_id])  # so the duplicates before it are, too
    assert (
        await db["usage"].fetchval(
            "SELECT sum(requests) FROM rollups WHERE key_id = $1", uuid.UUID(key["id"])
        )
        == len(records) + 1
    )


async def _list_alerts(account: Account, **filters: str) -> list[dict]:  # type: ignore[type-arg]
    async with account.client(SERVICE["usage"].url) as client:
        response = await client.get("/v1/alerts", params=filters)
    assert response.status_code == 200, response.text
    items: list[dict] = response.json()["items"]  # type: ignore[type-arg]
    return items
