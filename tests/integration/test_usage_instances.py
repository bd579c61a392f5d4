"""Scenarios that need a usage process of their own (own database, consumer group and
records topic): unused keys, automatic containment, a SIGKILL mid-stream, a replay."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from contracts import KEYS_EVENTS, Actor, KeyCreated, KeyCreatedData, format_utc
from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account
from tests.support.kafka import TopicTail
from tests.support.stack import Stack
from tests.support.usage import (
    alerts_of,
    create_key,
    known_to_usage,
    now_minute,
    publish,
    record,
    scratch_topic,
    steady,
    usage_instance,
    wait_alert,
    wait_counted,
    wait_seen,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack


def key_created(account_id: str, created_at: datetime, position: int) -> KeyCreated:
    return KeyCreated(
        event_id=uuid.uuid4(),
        key_id=uuid.uuid4(),
        account_id=account_id,
        stream_version=1,
        position=position,
        occurred_at=created_at,
        actor=Actor(type="user", id="alice@example.com"),
        data=KeyCreatedData(name="old integration", prefix="ig_live_Ab3d"),
    )


async def test_an_active_key_unused_for_thirty_days_raises_one_info_alert(
    stack: Stack, producer: KafkaProducer, account: Account, tmp_path: Path
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=40)
    unused, used, refused = (key_created(account.id, long_ago, n) for n in (1, 2, 3))
    async with (
        scratch_topic(stack.kafka, "test.usage.records") as records,
        scratch_topic(stack.kafka, "test.keys.events") as events,
        usage_instance(
            stack,
            tmp_path / "usage.log",
            records,
            USAGE_KEYS_EVENTS_TOPIC=events,
            USAGE_UNUSED_KEY_SCAN_SECONDS="1",
        ) as usage,
    ):
        unused_traffic = steady(str(unused.key_id), account.id, now_minute(35 * 24 * 60), 5, 2)
        used_traffic = [  # in one partition, in this order
            *steady(str(used.key_id), account.id, now_minute(35 * 24 * 60), 5, 2),
            *steady(str(used.key_id), account.id, now_minute(3 * 24 * 60), 5, 2),
        ]
        last_use = steady(str(refused.key_id), account.id, now_minute(35 * 24 * 60), 5, 2)
        refused_traffic = [  # tried since, but only refused: not a use (docs/last-used.md)
            *last_use,
            *steady(str(refused.key_id), account.id, now_minute(3 * 24 * 60), 5, 2, status=401),
            *steady(str(refused.key_id), account.id, now_minute(60), 1, 2, status=403),
        ]
        conn = await asyncpg.connect(usage.database)
        try:
            # The traffic is counted before the keys are known: the scan (every second)
            # only looks at known keys, so it never sees them as never used, which they
            # were not (a first alert for "unused since created" then a second one for
            # "unused since 35 days ago" would be two idle stretches).
            await publish(producer, unused_traffic + used_traffic + refused_traffic, records)
            await wait_counted(conn, str(unused.key_id), len(unused_traffic))
            await wait_counted(conn, str(used.key_id), len(used_traffic))
            await wait_counted(conn, str(refused.key_id), len(refused_traffic))
            for event in (unused, used, refused):
                await producer.send(
                    events, event.model_dump_json().encode(), str(event.key_id).encode()
                )
            await wait_alert(conn, str(unused.key_id), "unused_key")
            await wait_alert(conn, str(refused.key_id), "unused_key")
            await asyncio.sleep(3)  # three more scans find the same idle stretches
            assert await alerts_of(conn, str(unused.key_id)) == [("unused_key", "info")]
            assert await alerts_of(conn, str(used.key_id)) == [
                ("dormant_key_reactivated", "warning")  # used after 32 idle days
            ]
            assert sorted(await alerts_of(conn, str(refused.key_id))) == [
                ("dormant_key_reactivated", "warning"),  # tried after 32 idle days
                ("unused_key", "info"),
            ]
            body = await conn.fetchval(
                "SELECT body::text FROM alerts WHERE key_id = $1", unused.key_id
            )
            assert "disable" in body
            evidence = await conn.fetchval(
                "SELECT body->'evidence'->>'last_used_at' FROM alerts"
                " WHERE key_id = $1 AND kind = 'unused_key'",
                refused.key_id,
            )
            assert evidence == format_utc(last_use[-1].occurred_at)
        finally:
            await conn.close()


async def test_a_critical_alert_under_containment_gets_the_key_disabled_by_usage_monitor(
    stack: Stack,
    producer: KafkaProducer,
    api: httpx.AsyncClient,
    account: Account,
    tmp_path: Path,
) -> None:
    async with TopicTail(stack.kafka, KEYS_EVENTS) as keys_events:
        key = await create_key(api, name="contained key")
        mine = key["id"].encode()
        created = await keys_events.collect(lambda rs: any(r.key == mine for r in rs))
    async with (
        scratch_topic(stack.kafka, "test.usage.records") as records,
        scratch_topic(stack.kafka, "test.keys.events") as events,
        usage_instance(
            stack,
            tmp_path / "usage.log",
            records,
            USAGE_KEYS_EVENTS_TOPIC=events,  # the key's own events, not the whole history
            USAGE_CONTAINMENT="volume_spike:critical",
        ) as usage,
    ):
        for event in created:
            if event.key == mine:
                await producer.send(events, event.value or b"", mine)
        conn = await asyncpg.connect(usage.database)
        try:
            await known_to_usage(conn, key["id"])
            start = now_minute(60)
            await publish(
                producer,
                steady(key["id"], account.id, start, 40, 10)
                + steady(key["id"], account.id, start + timedelta(minutes=40), 1, 1200),
                records,
            )
            await wait_alert(conn, key["id"], "volume_spike")

            async def refused() -> bool:
                verdict = await api.post("/v1/verify", json={"key": key["key"]})
                return bool(verdict.json()["code"] == "disabled")

            await wait_until(refused, timeout=60, what="the key to be refused by /v1/verify")
            critical = await conn.fetchval(
                "SELECT alert_id::text FROM alerts WHERE key_id = $1 AND severity = 'critical'",
                uuid.UUID(key["id"]),
            )
        finally:
            await conn.close()
    events_of_key = (await api.get(f"/v1/keys/{key['id']}/events")).json()["items"]
    disabled = next(e for e in events_of_key if e["event_type"] == "KeyDisabled")
    assert disabled["actor"]["type"] == "system" and disabled["actor"]["id"] == "usage-monitor"
    assert critical in disabled["data"]["reason"]
    await _audit_names_usage_monitor(stack, account, key["id"])
    enabled = await api.post(f"/v1/keys/{key['id']}/enable", json={})
    assert enabled.status_code == 200, enabled.text  # a person can undo the containment


async def _audit_names_usage_monitor(stack: Stack, account: Account, key_id: str) -> None:
    async with httpx.AsyncClient(base_url=stack.url("audit"), headers=account.headers) as audit:

        async def recorded() -> bool:
            response = await audit.get("/v1/audit/events", params={"key_id": key_id})
            if response.status_code != 200:
                return False
            return any(
                (item.get("actor") or {}).get("id") == "usage-monitor"
                for item in response.json()["items"]
            )

        await wait_until(recorded, timeout=60, what="the audit log to name usage-monitor")


async def test_killed_mid_stream_the_service_counts_every_record_exactly_once(
    stack: Stack, producer: KafkaProducer, tmp_path: Path
) -> None:
    keys = [str(uuid.uuid4()) for _ in range(50)]
    start = now_minute(30)
    traffic = [
        record(keys[i % len(keys)], "crash-test", start + timedelta(milliseconds=20 * i))
        for i in range(40_000)
    ]
    async with (
        scratch_topic(stack.kafka, "test.usage.records") as records,
        usage_instance(
            stack, tmp_path / "usage.log", records, USAGE_BATCH_MAX_RECORDS="2000"
        ) as usage,
    ):
        conn = await asyncpg.connect(usage.database)
        try:
            sending = asyncio.create_task(publish(producer, traffic, records))

            async def midway() -> bool:
                total: int = await conn.fetchval("SELECT coalesce(sum(requests), 0) FROM rollups")
                return 2000 <= total < len(traffic)

            await wait_until(midway, timeout=60, interval=0.02, what="ingestion to be midway")
            usage.kill()  # SIGKILL: no shutdown, offsets of the batch in hand not committed
            await sending
            await publish(producer, traffic[:500], records)  # and a gateway re-sends some
            usage.restart()
            await usage.wait_ready()

            async def all_counted() -> bool:
                total: int = await conn.fetchval("SELECT coalesce(sum(requests), 0) FROM rollups")
                return total >= len(traffic)

            await wait_until(all_counted, timeout=120, what="every record to be counted")
            # A marker per key after the re-sent records: a key's records travel in one
            # partition, in order, so once every marker is counted, so is every re-send.
            markers = [record(key, "crash-test", start) for key in keys]
            await publish(producer, markers, records)
            await wait_seen(conn, [m.record_id for m in markers])
            total = len(traffic) + len(markers)
            assert await conn.fetchval("SELECT sum(requests) FROM rollups") == total
            assert await conn.fetchval("SELECT count(*) FROM seen_records") == total
        finally:
            await conn.close()


async def test_replaying_the_topic_from_the_start_gives_the_same_rollups_and_alerts(
    stack: Stack, producer: KafkaProducer, tmp_path: Path
) -> None:
    keys = [str(uuid.uuid4()) for _ in range(6)]
    start = now_minute(3 * 60)
    traffic = []
    for minute in range(120):
        for n, key in enumerate(keys):
            traffic += steady(key, "replay", start + timedelta(minutes=minute), 1, 5 + n)
    traffic += steady(keys[0], "replay", start + timedelta(minutes=120), 1, 400)  # spike
    traffic += steady(keys[1], "replay", start + timedelta(minutes=121), 1, 30, status=401)
    traffic += steady(keys[2], "replay", start + timedelta(minutes=122), 2, 5)
    snapshots = []
    async with (
        scratch_topic(stack.kafka, "test.usage.records") as records,
        scratch_topic(stack.kafka, "test.keys.events") as events,
    ):
        await publish(producer, traffic, records)
        for batch in ("5000", "37"):  # the replay reads in very different batches
            async with usage_instance(
                stack,
                tmp_path / f"usage-{batch}.log",
                records,
                USAGE_BATCH_MAX_RECORDS=batch,
                USAGE_KEYS_EVENTS_TOPIC=events,
            ) as usage:
                snapshots.append(await _snapshot(usage.database, len(traffic)))
    first, replay = snapshots
    assert first == replay
    assert {(k, s) for _, k, s in first[1]} == {
        ("volume_spike", "warning"),
        ("auth_failure_burst", "warning"),
    }


async def _snapshot(database: str, expected: int) -> tuple[list[tuple], list[tuple]]:  # type: ignore[type-arg]
    conn = await asyncpg.connect(database)
    try:

        async def done() -> bool:
            total: int = await conn.fetchval("SELECT coalesce(sum(requests), 0) FROM rollups")
            return total >= expected

        await wait_until(done, timeout=120, what="the topic to be read")
        await asyncio.sleep(1)
        rollups = await conn.fetch(
            "SELECT key_id, minute, requests, status_4xx, auth_failures, tokens_in, networks"
            " FROM rollups ORDER BY key_id, minute"
        )
        alerts = await conn.fetch("SELECT alert_id, kind, severity FROM alerts ORDER BY alert_id")
        return [tuple(r) for r in rollups], [tuple(a) for a in alerts]
    finally:
        await conn.close()
