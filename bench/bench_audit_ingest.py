"""audit_ingest: key events in, hash-chained audit records stored and committed.

The stack's own audit service is stopped; a stream of valid key events of a fresh account
(each key created, updated, disabled, enabled, rotated, revealed, renamed, revoked...) is
put on `keys.events`; the service is started again and drains it. The rate runs from the
first stored batch to the last record (startup and group join are not ingest). In the same
run a bare aiokafka consumer reads the same messages: the ceiling. The service's CPU time
per event comes from /proc. Needs the local stack (`make up`): it restarts that service.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.audit_stream import event_stream
from bench.harness import BenchContext, Figure, benchmark
from contracts import KEYS_EVENTS
from devstack import kafka as devstack_kafka
from devstack import postgres as devstack_postgres
from devstack import services as devstack_services
from devstack import stack as devstack_stack
from servicekit.kafka import Headers, KafkaProducer
from servicekit.settings import database_url_for

AUDIT: Final = next(s for s in devstack_services.SERVICES if s.name == "audit")
DEADLINE_S: Final = 300.0
SEND_CHUNK: Final = 10_000


@benchmark("audit_ingest")
async def audit_ingest(ctx: BenchContext) -> list[Figure]:
    count = ctx.scale(100_000, 10_000)
    account = f"bench-audit-{uuid.uuid4().hex[:10]}"
    built = time.perf_counter()
    messages = event_stream(account, count)
    ctx.note(
        events=count,
        account=account,
        build_s=round(time.perf_counter() - built, 1),
        event_bytes=round(sum(len(v) for _, v, _ in messages) / count),
    )
    ends = devstack_stack.endpoints_from_env()
    database = database_url_for("audit", ends.database_url)
    if not AUDIT.process.running():
        raise RuntimeError("the audit service of the local stack is not running (make up)")
    await asyncio.to_thread(AUDIT.process.stop)
    try:
        start = await end_offsets(ctx.bootstrap)
        ctx.note(produce_s=round(await produce(ctx.bootstrap, messages), 1))
        del messages
        ctx.note(others_caught_up_s=round(await wait_group_caught_up(ctx.bootstrap, "usage"), 1))
    finally:
        devstack_services.start(AUDIT, ends.kafka, ends.database_url)
    drain = await ingest_rate(database, account, count)
    ctx.note(drain_wall_s=round(drain.wall_s, 1), cpu_us_per_event=drain.cpu_us)
    bare = await bare_consumer_rate(ctx.bootstrap, start, count)
    return [
        ctx.figure("ingest_events_per_s", drain.rate, "ev/s", target=10_000),
        ctx.figure("bare_consumer_events_per_s", bare, "ev/s"),
        ctx.figure("ingest_share_of_bare_consumer", drain.rate / bare, "ratio", target=0.3),
        ctx.figure("audit_cpu_us_per_event", drain.cpu_us["audit"], "us", better="lower"),
        ctx.figure("postgres_cpu_us_per_event", drain.cpu_us["postgres"], "us", better="lower"),
    ]


async def end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(KEYS_EVENTS) or set()
        if not partitions:
            raise RuntimeError(f"no topic {KEYS_EVENTS}")
        tps = [TopicPartition(KEYS_EVENTS, p) for p in sorted(partitions)]
        offsets: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        return offsets
    finally:
        await consumer.stop()


async def produce(bootstrap: str, messages: list[tuple[bytes, bytes, Headers]]) -> float:
    producer = KafkaProducer(bootstrap, client_id="bench-audit")
    await producer.start()
    try:
        began = time.perf_counter()
        for i in range(0, len(messages), SEND_CHUNK):
            await producer.send_many(KEYS_EVENTS, messages[i : i + SEND_CHUNK])
        return time.perf_counter() - began
    finally:
        await producer.stop()


async def wait_group_caught_up(bootstrap: str, group: str, timeout: float = 120.0) -> float:
    """Let the other readers of keys.events finish, so they do not compete for the CPUs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    began = time.perf_counter()
    try:
        ends = await end_offsets(bootstrap)
        while time.perf_counter() - began < timeout:
            offsets = await admin.list_consumer_group_offsets(group)
            if all(
                (o := offsets.get(tp)) is not None and o.offset >= end for tp, end in ends.items()
            ):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the keys service's cache listener reads the same events
        return time.perf_counter() - began
    finally:
        await admin.close()


def _cpu(stat: str) -> float:
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _parent(stat: str) -> int:
    return int(stat.rsplit(")", 1)[1].split()[1])


def cpu_by_process(
    audit_pid: int | None, service: str = "audit", database: str = "audit"
) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of the processes that do the ingest, by pid: the service (audit
    unless named), the PostgreSQL backends of its database, the Kafka broker. Only this
    stack's: the broker and the backends of the server that `make up` started here (other
    stacks on the machine run brokers and `audit` databases of their own)."""
    broker, server = devstack_kafka.BROKER.pid(), devstack_postgres.SERVER.pid()
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            command = (
                (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                if pid != broker
                else ""
            )
        except OSError:
            continue  # gone in the meantime
        if pid == audit_pid:
            found[pid] = (service, _cpu(stat))
        elif pid == broker:
            found[pid] = ("kafka", _cpu(stat))
        elif (
            command.startswith("postgres: ")
            and f" {database} " in command
            and _parent(stat) == server
        ):
            found[pid] = ("postgres", _cpu(stat))
    return found


def cpu_used(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds used between two readings, by role (a process that ended is lost)."""
    used = {"audit": 0.0, "postgres": 0.0, "kafka": 0.0}
    for pid, (role, seconds) in after.items():
        used[role] = used.get(role, 0.0) + seconds - before.get(pid, (role, 0.0))[1]
    return used


@dataclass
class Drain:
    rate: float
    """Events per second from the first stored batch to the last record."""
    wall_s: float
    """From the start of the service to the last record."""
    cpu_us: dict[str, float]
    """CPU microseconds per event during the drain: the audit process, the backends of the
    audit database, the broker."""


async def ingest_rate(database: str, account: str, count: int) -> Drain:
    conn = await asyncpg.connect(database)
    began = time.perf_counter()
    first_at = first_count = 0.0
    pid: int | None = None
    cpu_first: dict[int, tuple[str, float]] = {}
    try:
        while True:
            done = await conn.fetchval(
                "SELECT seq FROM audit_chain_heads WHERE account_id = $1", account
            )
            now = time.perf_counter()
            pid = pid or AUDIT.process.pid()
            if done and not first_at:
                first_at, first_count = now, float(done)
                cpu_first = cpu_by_process(pid)
            if done and done >= count:
                events = done - first_count
                used = cpu_used(cpu_first, cpu_by_process(pid))
                cpu_us = {role: round(seconds / events * 1e6, 1) for role, seconds in used.items()}
                return Drain(events / (now - first_at), now - began, cpu_us)
            if now - began > DEADLINE_S:
                raise TimeoutError(f"only {done} of {count} events recorded")
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def bare_consumer_rate(bootstrap: str, start: dict[TopicPartition, int], count: int) -> float:
    """Bare aiokafka over the same messages: from the start offsets, `count` records."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-audit-bare-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        began = time.perf_counter()
        read = 0
        while read < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            read += sum(len(batch) for batch in batches.values())
            if time.perf_counter() - began > DEADLINE_S:
                raise TimeoutError("bare consumer too slow")
        return read / (time.perf_counter() - began)
    finally:
        await consumer.stop()
