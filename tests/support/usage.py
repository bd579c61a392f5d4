"""Driving the usage service in tests: usage records in simulated event time, keys it
knows, its alerts, and usage processes of a test's own (database, group, topics)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts import USAGE_RECORDS, UsageRecord
from servicekit.kafka import KafkaProducer
from servicekit.settings import database_url_for
from tests.support.processes import free_port, service_env, spawn
from tests.support.stack import Stack
from tests.support.wait import wait_until


def now_minute(minutes_ago: float = 0) -> datetime:
    """A minute boundary in the past: scenarios lay their traffic out from there."""
    at = datetime.now(UTC).replace(second=0, microsecond=0)
    return at - timedelta(minutes=minutes_ago)


def hour_start(hours_ago: int) -> datetime:
    """The start of a clock hour in the past: the usage service's cooldown window
    (USAGE_COOLDOWN_MINUTES 60) is the fixed clock hour, so a condition that lasts several
    minutes raises one alert only if those minutes lie in one such hour."""
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return at - timedelta(hours=hours_ago)


def record(
    key_id: str,
    account_id: str,
    at: datetime,
    ip: str = "203.0.113.7",
    status: int = 200,
) -> UsageRecord:
    return UsageRecord(
        record_id=uuid.uuid4(),
        key_id=uuid.UUID(key_id),
        account_id=account_id,
        occurred_at=at,
        source_ip=ip,
        user_agent="instagen-python/2.4",
        endpoint="/v1/generate",
        model="instagen-xl",
        status_code=status,
        tokens_in=120,
        tokens_out=800,
        latency_ms=412.5,
    )


def steady(
    key_id: str,
    account_id: str,
    start: datetime,
    minutes: int,
    per_minute: int,
    ip: str = "203.0.113.7",
    status: int = 200,
) -> list[UsageRecord]:
    """`per_minute` requests spread evenly over each of `minutes` minutes."""
    step = 60 / per_minute
    return [
        record(key_id, account_id, start + timedelta(minutes=m, seconds=i * step), ip, status)
        for m in range(minutes)
        for i in range(per_minute)
    ]


async def publish(
    producer: KafkaProducer, records: Sequence[UsageRecord], topic: str = USAGE_RECORDS
) -> None:
    """As a gateway does: keyed by key_id (so one key's records stay in order)."""
    for start in range(0, len(records), 2000):
        await producer.send_many(
            topic,
            [
                (str(r.key_id).encode(), r.model_dump_json().encode(), ())
                for r in records[start : start + 2000]
            ],
        )


async def create_key(api: httpx.AsyncClient, **attributes: Any) -> dict[str, Any]:
    response = await api.post("/v1/keys", json={"name": "usage scenario", **attributes})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def known_to_usage(usage_db: asyncpg.Connection, key_id: str, status: str = "active") -> None:
    """Wait until the usage service's read model has the key in `status`."""

    async def known() -> bool:
        found: str | None = await usage_db.fetchval(
            "SELECT status FROM key_directory WHERE key_id = $1", uuid.UUID(key_id)
        )
        return found == status

    await wait_until(known, timeout=90, what=f"usage to know key {key_id} as {status}")


async def counted(usage_db: asyncpg.Connection, key_id: str) -> int:
    total = await usage_db.fetchval(
        "SELECT coalesce(sum(requests), 0) FROM rollups WHERE key_id = $1", uuid.UUID(key_id)
    )
    return int(total)


async def wait_counted(usage_db: asyncpg.Connection, key_id: str, expected: int) -> None:
    async def done() -> bool:
        return await counted(usage_db, key_id) >= expected

    await wait_until(done, timeout=60, what=f"{expected} requests of {key_id} to be counted")


async def wait_seen(usage_db: asyncpg.Connection, record_ids: Sequence[uuid.UUID]) -> None:
    """Until each record id is claimed: a key's records travel in one partition, in order,
    so every record of that key sent before one of these has been handled too."""

    async def seen() -> bool:
        found: int = await usage_db.fetchval(
            "SELECT count(*) FROM seen_records WHERE record_id = ANY($1::uuid[])", record_ids
        )
        return found == len(set(record_ids))

    await wait_until(seen, timeout=60, what=f"{len(record_ids)} marker records to be counted")


async def alerts_of(usage_db: asyncpg.Connection, key_id: str) -> list[tuple[str, str]]:
    """(kind, severity) of the key's alerts, oldest first."""
    rows = await usage_db.fetch(
        "SELECT kind, severity FROM alerts WHERE key_id = $1 ORDER BY detected_at",
        uuid.UUID(key_id),
    )
    return [(r["kind"], r["severity"]) for r in rows]


async def wait_alert(usage_db: asyncpg.Connection, key_id: str, kind: str) -> None:
    async def raised() -> bool:
        return any(k == kind for k, _ in await alerts_of(usage_db, key_id))

    await wait_until(raised, timeout=60, what=f"a {kind} alert for {key_id}")


# --- a usage process of the test's own -----------------------------------------------------
@contextlib.asynccontextmanager
async def scratch_topic(bootstrap: str, prefix: str) -> AsyncIterator[str]:
    name = f"{prefix}.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests-admin")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
        yield name
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics([name])
        await admin.close()


@contextlib.asynccontextmanager
async def scratch_database(stack: Stack) -> AsyncIterator[str]:
    name = f"usage_test_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url_for("postgres", stack.database_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield database_url_for(name, stack.database_url)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@dataclass
class UsageInstance:
    url: str
    database: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]

    async def wait_ready(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:

            async def ready() -> bool:
                assert self.process.poll() is None, f"usage exited:\n{self.log.read_text()}"
                try:
                    return (await client.get(f"{self.url}/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, timeout=60, interval=0.2, what="the test's usage process")

    def restart(self) -> None:
        self.process = spawn("usage", self.env, self.log.with_suffix(".2.log"))

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 30)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def start_at_end(bootstrap: str, topic: str, groups: Sequence[str]) -> None:
    """Commit `topic`'s end offsets for each of the new `groups`: a process of those groups
    reads what is published from now on, not the topic's whole history (which, on the
    stack's shared topics, holds every earlier test's records, poison included)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, p) for p in cluster.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    for group in groups:
        committer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await committer.start()
        try:
            committer.assign(partitions)
            await committer.commit(dict(ends))
        finally:
            await committer.stop()


async def groups_from_now(stack: Stack, records_topic: str) -> dict[str, str]:
    """Consumer groups (as `usage_instance` settings) that read `records_topic` from its
    end as it is now: the records published from here on, not every earlier test's."""
    groups = {
        "USAGE_CONSUMER_GROUP": f"usage-test-{uuid.uuid4().hex[:8]}",
        "USAGE_LIMITS_CONSUMER_GROUP": f"usage-limits-test-{uuid.uuid4().hex[:8]}",
    }
    await start_at_end(stack.kafka, records_topic, list(groups.values()))
    return groups


@contextlib.asynccontextmanager
async def usage_instance(
    stack: Stack, log: Path, records_topic: str, **settings: str
) -> AsyncIterator[UsageInstance]:
    """A usage process on a free port, with its own database and consumer groups (unless
    `settings` name them: `groups_from_now`), reading `records_topic` (and `keys.events`,
    unless USAGE_KEYS_EVENTS_TOPIC says otherwise)."""
    async with scratch_database(stack) as database:
        port = free_port()
        groups = {
            "USAGE_CONSUMER_GROUP": f"usage-test-{uuid.uuid4().hex[:8]}",
            "USAGE_LIMITS_CONSUMER_GROUP": f"usage-limits-test-{uuid.uuid4().hex[:8]}",
        }
        env = service_env(
            stack,
            "usage",
            USAGE_HTTP_PORT=str(port),
            USAGE_DATABASE_URL=database,
            USAGE_RECORDS_TOPIC=records_topic,
            **groups | settings,
        )
        instance = UsageInstance(
            f"http://127.0.0.1:{port}", database, env, log, spawn("usage", env, log)
        )
        try:
            await instance.wait_ready()
            yield instance
        finally:
            await instance.stop()
