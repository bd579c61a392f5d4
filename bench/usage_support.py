"""What the usage benchmarks share: a usage process of their own (own database, consumer
group and scratch topics, so the stack's usage service and its data are not touched),
realistic usage records, fast producing, and the process's CPU and memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaProducer

from bench.scratch_topic import scratch_topic
from contracts import Actor, KeyCreated, KeyCreatedData, KeyDisabled, KeyDisabledData
from devstack import services as devstack_services
from devstack import stack as devstack_stack
from servicekit.settings import database_url_for

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
FAST_PRODUCER: Final[dict[str, Any]] = {
    "acks": 1,
    "linger_ms": 20,
    "max_batch_size": 512 * 1024,
    "request_timeout_ms": 30_000,
}
"""Loading a scratch topic before the clock starts: throughput over durability."""

_ENDPOINTS: Final = ("/v1/generate", "/v1/images", "/v1/edits", "/v1/upscale")
_MODELS: Final = ("instagen-xl", "instagen-base", "instagen-turbo", None)
_AGENTS: Final = (
    "instagen-python/2.4.1 httpx/0.27.0",
    "instagen-node/1.9.0 undici/6.11",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0",
)


def server_url() -> str:
    return devstack_stack.endpoints_from_env().database_url


def free_port() -> int:
    import socket  # noqa: PLC0415 - only here

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def scratch_database(prefix: str = "usage_bench") -> AsyncIterator[str]:
    """A new empty database on the stack's server; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url_for("postgres", server_url()))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield database_url_for(name, server_url())
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@dataclass
class UsageProcess:
    """The usage service as `make up` deploys it: the ingest process (`process`, its HTTP
    API at `url`) and the limit counter's (`counter`; None where one process runs both)."""

    process: asyncio.subprocess.Process
    url: str
    database: str
    group: str
    counter: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        return [self.pid] + ([self.counter.pid] if self.counter is not None else [])

    def rss_bytes(self) -> int:
        """The ingest process's (the one process's where one runs both)."""
        return _rss_bytes(self.pid)

    def counter_rss_bytes(self) -> int:
        return _rss_bytes(self.counter.pid) if self.counter is not None else 0

    def cpu_seconds(self) -> float:
        """The ingest process's (the one process's where one runs both)."""
        return _cpu_seconds(self.pid)

    def counter_cpu_seconds(self) -> float:
        """The limit counter's process (the one process's where one runs both)."""
        return _cpu_seconds(self.counter.pid if self.counter is not None else self.pid)


@contextlib.asynccontextmanager
async def usage_process(
    kafka: str, records_topic: str, events_topic: str, log: Path, **env: str
) -> AsyncIterator[UsageProcess]:
    """A usage service on free ports with its own database, groups and topics, deployed
    as `make up` does (an ingest process and a limit counter process; `USAGE_ROLE="all"`
    in `env`: one process running both): its limit states go to a scratch topic unless
    `env` names one (on the stack's `usage.limits` they would outlive the run, and every
    keys instance would read them at start)."""
    async with (
        scratch_database() as database,
        scratch_topic(kafka, "bench.usage.limits", 3) as limits_topic,
    ):
        group = f"bench-usage-{uuid.uuid4().hex[:8]}"
        environment = devstack_services.service_env(kafka, server_url(), "usage")
        environment.update(
            USAGE_DATABASE_URL=database,
            USAGE_CONSUMER_GROUP=group,
            USAGE_RECORDS_TOPIC=records_topic,
            USAGE_KEYS_EVENTS_TOPIC=events_topic,
            USAGE_LIMITS_CONSUMER_GROUP=f"bench-usage-limits-{uuid.uuid4().hex[:8]}",
            USAGE_LIMITS_TOPIC=limits_topic,
            LOG_LEVEL="WARNING",
        )
        environment.update(env)
        split = environment.get("USAGE_ROLE", "split") != "all"
        roles = ("ingest", "limits") if split else ("all",)
        async with contextlib.AsyncExitStack() as processes:
            started = [
                await processes.enter_async_context(
                    _process(environment, role, log.with_suffix(f".{role}{log.suffix}"))
                )
                for role in roles
            ]
            (ingest, url), counter = started[0], (started[1][0] if split else None)
            yield UsageProcess(ingest, url, database, group, counter)


@contextlib.asynccontextmanager
async def _process(
    environment: dict[str, str], role: str, log: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.usage", cwd=REPO_ROOT,
            env={**environment, "USAGE_ROLE": role, "USAGE_HTTP_PORT": str(port)},
            stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        await _wait_ready(process, url, log)
        yield process, url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _wait_ready(
    process: asyncio.subprocess.Process, url: str, log: Path, timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                tail = await asyncio.to_thread(log.read_text)
                raise RuntimeError(f"usage process exited:\n{tail[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError("usage process not ready")


def key_pool(count: int, account: str) -> list[tuple[str, str]]:
    """(key_id, account_id) pairs; accounts of 20 keys each."""
    return [(str(uuid.uuid4()), f"{account}-{i // 20:05d}") for i in range(count)]


def zipf_weights(count: int, exponent: float = 1.0) -> list[float]:
    """A few keys make most of the traffic, as on a real API."""
    return [1.0 / (rank + 1) ** exponent for rank in range(count)]


def usage_record(
    key: tuple[str, str], at: datetime, rng: random.Random, status: int | None = None
) -> tuple[bytes, bytes]:
    """One realistic usage record (about 400 bytes) as (message key, value)."""
    key_id, account = key
    host = hash(key_id) & 0xFFFF
    value = {
        "record_id": str(uuid.uuid4()),
        "key_id": key_id,
        "account_id": account,
        "occurred_at": at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "source_ip": f"198.{18 + (host >> 8) % 2}.{host & 255}.{rng.randrange(1, 255)}",
        "user_agent": _AGENTS[host % len(_AGENTS)],
        "endpoint": _ENDPOINTS[rng.randrange(len(_ENDPOINTS))],
        "model": _MODELS[rng.randrange(len(_MODELS))],
        "status_code": status if status is not None else (200 if rng.random() > 0.02 else 429),
        "tokens_in": rng.randrange(20, 800),
        "tokens_out": rng.randrange(100, 3000),
        "latency_ms": round(rng.uniform(40, 2500), 2),
    }
    # A copy: orjson's bytes keep its whole ~4 KB buffer (a million records held: 4 GB).
    return key_id.encode(), memoryview(orjson.dumps(value)).tobytes()


def traffic(
    keys: Sequence[tuple[str, str]], count: int, rate: float, start: datetime, seed: int = 7
) -> list[tuple[bytes, bytes]]:
    """`count` records over `keys` (Zipf), with event times paced at `rate` per second."""
    rng = random.Random(seed)  # noqa: S311 - synthetic traffic, not secrets
    chosen = rng.choices(keys, weights=zipf_weights(len(keys)), k=count)
    step = timedelta(seconds=1 / rate)
    return [usage_record(key, start + i * step, rng) for i, key in enumerate(chosen)]


async def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes, bytes]]) -> float:
    """Send everything as fast as the broker takes it (20,000 at a time: `messages` may be
    made as they go); returns the seconds it took."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **FAST_PRODUCER)
    await producer.start()
    began = time.perf_counter()
    each = iter(messages)
    try:
        while chunk := list(itertools.islice(each, 20_000)):
            futures = [await producer.send(topic, value, key=key) for key, value in chunk]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - began


async def limit_positions(database: str) -> int:
    """The sum of the limit counter's stored positions (records it has taken)."""
    async with connected(database) as conn:
        return await positions(conn, "limit_offsets")


async def counted(database: str) -> int:
    """Records the analytic ingest has stored (see `positions`)."""
    async with connected(database) as conn:
        return await positions(conn, "record_offsets")


@contextlib.asynccontextmanager
async def connected(database: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(database)
    try:
        yield conn
    finally:
        await conn.close()


async def positions(conn: Any, table: str) -> int:
    """The sum of the next offsets a usage process stored in `table` (record_offsets: the
    ingest's, limit_offsets: the counter's), each written in the transaction of its batch's
    effect: on the benchmarks' new topics (offsets from 0), how many records are stored.
    A few rows whatever the keys: a sum over the rollups, the former probe, read the whole
    table (~50 ms of PostgreSQL's CPU a call at a million keys, charged to the ingest it
    measured and taken from it)."""
    try:
        return int(await conn.fetchval(f"SELECT coalesce(sum(next_offset), 0) FROM {table}"))  # noqa: S608 - one of two names
    except asyncpg.UndefinedTableError:
        return 0


def key_events(
    keys: Sequence[tuple[str, str]],
    created: datetime,
    disabled: bool = False,
    limit: int = 0,
    **limits: Any,
) -> Iterator[tuple[bytes, bytes]]:
    """KeyCreated (and KeyDisabled) events of `keys` as (message key, value), made one at a
    time (a million keys' events are not held at once); `limits`: more of the key's limits
    (rate_limit_per_minute, token_budget...)."""
    actor = Actor(type="user", id="bench@example.com")
    for position, (key_id, account) in enumerate(keys, start=1):
        created_event = KeyCreated(
            event_id=uuid.uuid4(),
            key_id=uuid.UUID(key_id),
            account_id=account,
            stream_version=1,
            position=position,
            occurred_at=created,
            actor=actor,
            data=KeyCreatedData(
                name=f"bench key {position}",
                prefix="ig_live_Ab3d",
                rate_limit_per_hour=limit or None,
                **limits,
            ),
        )
        yield key_id.encode(), created_event.model_dump_json().encode()
        if disabled:
            event = KeyDisabled(
                event_id=uuid.uuid4(),
                key_id=uuid.UUID(key_id),
                account_id=account,
                stream_version=2,
                position=position,
                occurred_at=created + timedelta(seconds=1),
                actor=actor,
                data=KeyDisabledData(reason="bench: a leaked key"),
            )
            yield key_id.encode(), event.model_dump_json().encode()


async def directory_size(database: str, table: str = "key_directory") -> int:
    """Keys in the ingest's read model (`limit_directory`: the limit counter's)."""
    assert table in ("key_directory", "limit_directory")  # noqa: S101 - a constant
    conn = await asyncpg.connect(database)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def poll_until(
    check: Callable[[], Awaitable[bool]], timeout: float = 600.0, interval: float = 0.2
) -> None:
    """Wait for another process's progress (its database, its topics) with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout:.0f}s")
        await asyncio.sleep(interval)


class RecordStamper:
    """Usage records at ~1 us each for a load generator: one JSON template per key, a
    counter-based record id (still a valid UUID) and one timestamp per call."""

    def __init__(self, keys: Sequence[tuple[str, str]], seed: int = 11) -> None:
        rng = random.Random(seed)  # noqa: S311 - synthetic traffic
        parts = uuid.uuid4().hex
        self._prefix = f"{parts[:8]}-{parts[8:12]}-4{parts[12:15]}-8{parts[15:18]}-"
        self._count = 0
        self._templates = []
        for key in keys:
            _, value = usage_record(key, datetime.now(UTC), rng)
            body = orjson.loads(value)
            body["record_id"], body["occurred_at"] = "@ID@", "@AT@"
            text = orjson.dumps(body).decode().replace("%", "%%")
            template = text.replace('"@ID@"', '"%s"').replace('"@AT@"', '"%s"')
            self._templates.append((key[0].encode(), template))
        self._weights = zipf_weights(len(keys))
        self._rng = rng

    def batch(self, count: int, at: datetime) -> list[tuple[bytes, bytes]]:
        stamp = at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        chosen = self._rng.choices(self._templates, weights=self._weights, k=count)
        start, self._count = self._count, self._count + count
        prefix = self._prefix
        return [
            (key, (template % (f"{prefix}{n:012x}", stamp)).encode())
            for n, (key, template) in enumerate(chosen, start)
        ]
