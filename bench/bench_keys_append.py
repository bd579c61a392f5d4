"""keys_append: appends with 16 concurrent writers, next to the `eventsourcing` package's
PostgreSQL recorder writing as many events, with the same shape, to the same server.

The key service's path, in this process (on a uvloop event loop in a thread, as the
service runs on uvloop): `use_cases` in `in_transaction` on a `KeysUnitOfWork` over the
service's own asyncpg pool (servicekit.db.create_pool) of 16 connections to the keys
database, exactly as the HTTP and command entrypoints call them. Each writer owns
`KEYS_PER_WRITER` keys of a bench account: it creates them, then cycles update (rename) ->
disable -> enable over them until it has appended `events_per_writer` events; one event
per unit of work, and each loads the key (its read model), then appends with optimistic
concurrency: the events, their place in the sequencer's queue and the read model in one
statement, atomic on its own, without BEGIN and COMMIT (issue 14; a create, which also
seals the secret and writes the lookup, is a transaction); the appends (and the loads)
that come while another is in flight on the pool share one statement (group commit). The
publishing guarantee stays on: the stack's running keys service (whichever process holds
the publisher's lock) sequences and publishes the events while the writers write. After
the writers end, the benchmark waits until the publisher's checkpoint covers every
committed event, and counts this account's events on `keys.events` with an independent
reader: all of them must be there.

The baseline: `eventsourcing.postgres.PostgresApplicationRecorder` on a database of its
own (`bench_eventsourcing`, dropped afterwards) of the same server, with a pool of 16,
driven by 16 threads (as the package's own concurrency tests drive it). The same number of
writers, originators, versions and events; one `insert_events([event])` per event; the
state is a JSON document the size of the key service's event rows. It only records: no
aggregate load, no read model, no publisher. Its recorder takes an EXCLUSIVE table lock
per insert so that notification ids follow commit order; the key service gets the same
guarantee from its sequencer without a lock.

Both run one after the other in the same run (not at once), keys first. The machine has
2 cores: the writers, PostgreSQL, the publisher and Kafka share them. `params.keys_cpu` and
`params.eventsourcing_cpu` give the CPU each phase cost per event in this process, in the
PostgreSQL server and in the keys processes (the publisher), and how busy the whole machine
was: on 2 cores a CPU-bound figure says more through these than through events/s alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg
import orjson
import uvloop

from bench import keys_support as ks
from bench.harness import BenchContext, Figure, benchmark
from contracts import KEYS_EVENTS, KeyAttributes, KeyPatch
from servicekit import db
from services.keys.app import use_cases
from services.keys.app.unit_of_work import KeysTransaction, KeysUnitOfWork
from services.keys.domain.recorded import Meta

WRITERS: Final = 16
KEYS_PER_WRITER: Final = 10
ES_DATABASE: Final = "bench_eventsourcing"
CATCH_UP_TIMEOUT_S: Final = 120.0
Step = tuple[str, int]
"""(operation, index of the writer's key): create, update, disable or enable."""


def plan(events: int, keys: int) -> list[Step]:
    """One writer's appends: create every key, then update -> disable -> enable, round robin."""
    steps: list[Step] = [("create", k) for k in range(keys)]
    cycle = ("update", "disable", "enable")
    i = 0
    while len(steps) < events:
        steps.append((cycle[(i // keys) % 3], i % keys))
        i += 1
    return steps[:events]


@benchmark("keys_append")
async def keys_append(ctx: BenchContext) -> list[Figure]:
    per_writer = ctx.scale(300, 40)
    keys = KEYS_PER_WRITER if not ctx.quick else 4
    steps = plan(per_writer, keys)
    ctx.note(
        writers=WRITERS,
        keys_per_writer=keys,
        events_per_writer=per_writer,
        events=WRITERS * per_writer,
        mix={
            op: sum(1 for s in steps if s[0] == op) * WRITERS
            for op in ("create", "update", "disable", "enable")
        },
        cpu_note="2 cores: writers, PostgreSQL, the publisher and Kafka share them",
    )
    stack = ks.endpoints(ctx.bootstrap)
    with ks.workdir("keys-append") as work:
        async with (
            ks.bench_account(stack, "append", with_admin_key=False) as account,
            # A publisher of our own, should the stack's keys process not be running; when
            # it is, it keeps the publisher's lock and this one stands by.
            ks.keys_process(stack, work, "keys-standby-publisher"),
        ):
            keys_run = await _keys_writers(ctx, stack, account.id, steps)
    es_run = await _eventsourcing_writers(ctx, stack, steps)
    target = 2 * es_run.per_s
    return [
        Figure(
            "append_events_per_s",
            keys_run.per_s,
            "events/s",
            target=round(target, 1),
            baseline=es_run.per_s,
            baseline_of="keys_append/eventsourcing_events_per_s",
        ),
        Figure("eventsourcing_events_per_s", es_run.per_s, "events/s"),
        Figure(
            "append_p50_ms",
            ks.percentile(keys_run.latencies, 50) * 1000,
            "ms",
            better="lower",
            baseline=ks.percentile(es_run.latencies, 50) * 1000,
            baseline_of="keys_append/eventsourcing_p50_ms",
        ),
        Figure(
            "append_p99_ms",
            ks.percentile(keys_run.latencies, 99) * 1000,
            "ms",
            better="lower",
            baseline=ks.percentile(es_run.latencies, 99) * 1000,
            baseline_of="keys_append/eventsourcing_p99_ms",
        ),
        Figure(
            "eventsourcing_p50_ms", ks.percentile(es_run.latencies, 50) * 1000, "ms", better="lower"
        ),
        Figure(
            "eventsourcing_p99_ms", ks.percentile(es_run.latencies, 99) * 1000, "ms", better="lower"
        ),
        Figure("publisher_catch_up_s", keys_run.catch_up_s, "s", better="lower"),
    ]


class Run:
    def __init__(self, events: int, seconds: float, latencies: list[float]) -> None:
        self.events = events
        self.seconds = seconds
        self.latencies = latencies
        self.catch_up_s = 0.0

    @property
    def per_s(self) -> float:
        return self.events / self.seconds


# --- the key service's own path ---------------------------------------------------------
async def _keys_writers(
    ctx: BenchContext,
    stack: ks.StackEndpoints,
    account_id: str,
    steps: Sequence[Step],
    dsn: str | None = None,
) -> Run:
    """The writers on the stack's keys database, or on `dsn` (keys_append_scale's)."""
    dsn = dsn or stack.keys_db
    tools = ks.tools()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    expected = WRITERS * len(steps)
    published: set[str] = set()
    all_published = asyncio.Event()

    def on_event(record: Any, _: float) -> None:
        event = orjson.loads(record.value)
        if event.get("account_id") == account_id:
            published.add(event["event_id"])
            if len(published) >= expected:
                all_published.set()

    try:
        async with ks.TopicTail(ctx.bootstrap, [KEYS_EVENTS], on_event):
            async with pool.acquire() as conn:
                before = await ks.publisher_state(conn)
            seconds, latencies, keys_cpu, grouped = await asyncio.to_thread(
                _on_uvloop, dsn, tools, account_id, steps
            )
            async with pool.acquire() as conn:
                catch_up, after = await ks.wait_publisher_caught_up(conn, CATCH_UP_TIMEOUT_S)
                ours = await conn.fetchrow(
                    "SELECT count(*) AS n, count(*) FILTER (WHERE position IS NULL) AS todo,"
                    " max(position) AS top FROM events WHERE account_id = $1",
                    account_id,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_published.wait(), 30)
        if ours["n"] != expected or ours["todo"] or after.checkpoint < ours["top"]:
            raise RuntimeError(f"publisher did not cover our events: {dict(ours)}, {after}")
        if len(published) != expected:
            raise RuntimeError(f"{len(published)} of {expected} events read from {KEYS_EVENTS}")
        ctx.note(
            keys_event_loop="uvloop (as the service runs)",
            keys_seconds=round(seconds, 3),
            keys_cpu=keys_cpu,
            group_commit=grouped,
            publisher={
                "before": vars(before),
                "after": vars(after),
                "catch_up_s_after_last_append": round(catch_up, 3),
                "events_read_back_from_topic": len(published),
            },
        )
        run = Run(expected, seconds, [x for lat in latencies for x in lat])
        run.catch_up_s = catch_up
        return run
    finally:
        await pool.close()


def _on_uvloop(
    dsn: str, tools: use_cases.SecretTools, account_id: str, steps: Sequence[Step]
) -> tuple[float, list[list[float]], dict[str, float], dict[str, float]]:
    """The writers on a uvloop event loop of their own (in a thread), as the service runs:
    asyncio's default loop costs about twice the CPU per database round trip."""

    async def write() -> tuple[float, list[list[float]], dict[str, float], dict[str, float]]:
        # The service's own pool (servicekit.db): asyncpg's default pool adds a reset round
        # trip (RESET ALL; UNLISTEN *; ...) to every release, which the service does not do.
        pool = await db.create_pool(dsn, min_size=WRITERS, max_size=WRITERS)
        try:
            uow = KeysUnitOfWork(lambda: pool)
            # Started with the pool's backends alive, ended before they go.
            cpu = ks.CpuBudget.start(urlsplit(dsn).path.lstrip("/"))
            began = time.perf_counter()
            latencies = await asyncio.gather(
                *(_keys_writer(uow, tools, account_id, w, steps) for w in range(WRITERS))
            )
            seconds = time.perf_counter() - began
            used = cpu.since(WRITERS * len(steps))
            group, reads = uow.group, uow.reads
            grouped = {
                "appends": group.appends,
                "statements": group.statements,
                "appends_per_statement": round(group.appends / max(group.statements, 1), 2),
                "loads": reads.asked,
                "load_queries": reads.statements,
            }
            return seconds, list(latencies), used, grouped
        finally:
            await pool.close()

    return uvloop.run(write())


async def _keys_writer(
    uow: KeysUnitOfWork,
    tools: use_cases.SecretTools,
    account_id: str,
    writer: int,
    steps: Sequence[Step],
) -> list[float]:
    key_ids = [uuid.uuid4() for _ in range(max(k for _, k in steps) + 1)]
    latencies: list[float] = []
    for n, (op, k) in enumerate(steps):
        meta = ks.system_meta(f"bench-append:{writer}:{n}")
        key_id = key_ids[k]

        async def work(
            tx: KeysTransaction,
            op: str = op,
            key_id: uuid.UUID = key_id,
            n: int = n,
            meta: Meta = meta,
        ) -> use_cases.Outcome:
            if op == "create":
                attributes = KeyAttributes(
                    name=f"bench-append-{writer}-{n}", scopes=["keys:verify"]
                )
                return await use_cases.create(
                    tx, tools, account_id, attributes, meta, key_id=key_id
                )
            if op == "update":
                patch = KeyPatch(name=f"bench-append-{writer}-{n}")
                return await use_cases.update(tx, account_id, key_id, patch, meta)
            if op == "disable":
                return await use_cases.disable(tx, account_id, key_id, "append benchmark", meta)
            return await use_cases.enable(tx, account_id, key_id, None, meta)

        began = time.perf_counter()
        await use_cases.in_transaction(uow, work)
        latencies.append(time.perf_counter() - began)
    return latencies


# --- the baseline: eventsourcing's PostgreSQL recorder --------------------------------------
def _state(op: str, writer: int, n: int) -> bytes:
    """A serialised event of the size of a key-service event row (envelope fields + data)."""
    shapes: dict[str, dict[str, Any]] = {
        "create": {
            "name": f"bench-append-{writer}-{n}",
            "description": None,
            "environment": "production",
            "scopes": ["keys:verify"],
            "rate_limit_per_hour": None,
            "expires_at": None,
            "prefix": "ig_live_Ab3d",
        },
        "update": {
            "name": {
                "before": f"bench-append-{writer}-{n - 1}",
                "after": f"bench-append-{writer}-{n}",
            }
        },
        "disable": {"reason": "append benchmark"},
        "enable": {"reason": None},
    }
    data = shapes[op]
    return orjson.dumps(
        {
            "event_id": uuid.uuid4(),
            "occurred_at": datetime.now(UTC),
            "account_id": "bench-append-eventsourcing",
            "actor": {"type": "system", "id": "bench", "ip": None, "user_agent": None},
            "correlation_id": f"bench-append:{writer}:{n}",
            "causation_id": None,
            "data": data,
        }
    )


async def _eventsourcing_writers(
    ctx: BenchContext, stack: ks.StackEndpoints, steps: Sequence[Step]
) -> Run:
    # Imported here: a dev-only package, needed by this baseline alone.
    from eventsourcing.persistence import StoredEvent  # noqa: PLC0415
    from eventsourcing.postgres import (  # noqa: PLC0415
        PostgresApplicationRecorder,
        PostgresDatastore,
    )

    url = urlsplit(stack.server_url)
    admin = await asyncpg.connect(stack.server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{ES_DATABASE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{ES_DATABASE}"')
        try:
            datastore = PostgresDatastore(
                dbname=ES_DATABASE,
                host=url.hostname or "127.0.0.1",
                port=url.port or 5432,
                user=url.username or "",
                password=url.password or "",
                pool_size=WRITERS,
            )
            try:
                recorder = PostgresApplicationRecorder(datastore)
                recorder.create_table()
                keys = max(k for _, k in steps) + 1
                gate = threading.Barrier(WRITERS + 1)

                def writer(w: int) -> list[float]:
                    ids = [uuid.uuid4() for _ in range(keys)]
                    versions = [0] * keys
                    events = []
                    for n, (op, k) in enumerate(steps):
                        versions[k] += 1
                        topic = f"bench_keys:Key{op.capitalize()}d"
                        events.append(StoredEvent(ids[k], versions[k], topic, _state(op, w, n)))
                    latencies = []
                    gate.wait()
                    for event in events:
                        began = time.perf_counter()
                        recorder.insert_events([event])
                        latencies.append(time.perf_counter() - began)
                    return latencies

                with ThreadPoolExecutor(max_workers=WRITERS) as pool:
                    futures = [pool.submit(writer, w) for w in range(WRITERS)]
                    await asyncio.to_thread(gate.wait)
                    cpu = ks.CpuBudget.start(ES_DATABASE)
                    began = time.perf_counter()
                    latencies = await asyncio.to_thread(lambda: [f.result() for f in futures])
                    seconds = time.perf_counter() - began
                    es_cpu = cpu.since(WRITERS * len(steps))
                written = recorder.max_notification_id() or 0
            finally:
                datastore.close()
            if written != WRITERS * len(steps):
                raise RuntimeError(
                    f"eventsourcing wrote {written} events, not {WRITERS * len(steps)}"
                )
            ctx.note(
                eventsourcing_seconds=round(seconds, 3),
                eventsourcing_cpu=es_cpu,
                eventsourcing_version=_version(),
            )
            return Run(written, seconds, [x for lat in latencies for x in lat])
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{ES_DATABASE}" WITH (FORCE)')
    finally:
        await admin.close()


def _version() -> str:
    from importlib.metadata import version  # noqa: PLC0415

    import psycopg  # noqa: PLC0415

    psycopg_impl = f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__})"
    return f"eventsourcing {version('eventsourcing')}, {psycopg_impl}"
