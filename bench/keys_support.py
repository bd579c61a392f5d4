"""What the key-service benchmarks share: extra keys processes they own, a bench account
whose keys are revoked afterwards, an independent reader of topics, the publisher's
progress, and a small HTTP/1.1 load generator that runs in a process of its own.

Run as a module it is that load generator (and trivial servers to measure against):
`python -m bench.keys_support loadgen SPEC.json` prints one JSON line of results;
`python -m bench.keys_support echo-server PORT` (raw asyncio) and `... asgi-server PORT`
(a bare ASGI app under uvicorn) answer every request with a fixed 200 until stopped.
None of them is a benchmark: the `bench_keys_*` modules drive them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from contracts import Actor
from devstack import services as devstack_services
from devstack import stack as devstack_stack
from servicekit.settings import database_url_for
from services.keys.app import use_cases
from services.keys.app.unit_of_work import KeysTransaction, KeysUnitOfWork
from services.keys.bootstrap import secret_tools
from services.keys.domain import errors
from services.keys.domain.recorded import Meta
from services.keys.settings import KeysSettings

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 30.0
BENCH_ACTOR: Final = Actor(type="system", id="bench")
KEYS_ARGV_TAIL: Final = ("-m", "services.keys")


# --- where the stack is -------------------------------------------------------------------
@dataclass(frozen=True)
class StackEndpoints:
    kafka: str
    server_url: str
    """The PostgreSQL server (any database on it); the services derive their own."""

    @property
    def keys_db(self) -> str:
        """The keys service's database, as the service itself would choose it."""
        return os.environ.get("KEYS_DATABASE_URL") or database_url_for("keys", self.server_url)

    @property
    def keys_db_name(self) -> str:
        return urlsplit(self.keys_db).path.lstrip("/")


def endpoints(kafka: str) -> StackEndpoints:
    """The broker the harness was given and the server of the local stack (or DATABASE_URL)."""
    return StackEndpoints(kafka, devstack_stack.endpoints_from_env().database_url)


def keys_settings() -> KeysSettings:
    """Settings with the stack's own pepper and master key, so secrets made here verify there."""
    env = devstack_services.service_env("", "postgresql://x@127.0.0.1/x", "keys")
    return KeysSettings(
        keys_hash_pepper=SecretStr(env["KEYS_HASH_PEPPER"]),
        keys_master_key=SecretStr(env["KEYS_MASTER_KEY"]),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile (`pct` in 0..100) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_of(
    command: str | None = None,
    argv_tail: Sequence[str] = (),
    title: Callable[[str], bool] | None = None,
    cwd: str | None = None,
) -> float:
    """CPU seconds so far of every live process named `command` (e.g. `postgres`), whose
    argv ends with `argv_tail` (e.g. `-m services.keys`: every keys process) and whose
    command line passes `title` (PostgreSQL backends show `postgres: <user> <db> <client>`)
    and, with `cwd`, that run in that directory (a shared machine runs other checkouts'
    keys processes too; `own_keys_cpu` counts only this checkout's).
    Read-only, for a CPU budget of a phase; a process that exits meanwhile is not counted."""
    total = 0.0
    tail = [a.encode() for a in argv_tail]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if command is not None and stat[stat.find("(") + 1 : stat.rfind(")")] != command:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if tail and argv[-len(tail) - 1 : -1] != tail:
            continue
        if title is not None and not title(b" ".join(argv).decode(errors="replace")):
            continue
        if cwd is not None and _cwd_of(entry) != cwd:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _cwd_of(entry: Path) -> str | None:
    try:
        return os.readlink(entry / "cwd")
    except OSError:
        return None


def own_keys_cpu() -> float:
    """CPU seconds so far of the keys processes of this checkout (the stack's and the
    benchmark's own), not of other checkouts' stacks on the same machine."""
    return cpu_seconds_of(argv_tail=KEYS_ARGV_TAIL, cwd=str(REPO_ROOT))


def postgres_cpu(database: str) -> tuple[float, float]:
    """(CPU seconds of the backends connected to `database`, of the server's own processes:
    WAL writer, checkpointer, ... which work for every database)."""

    def backend_of(title: str) -> bool:
        parts = title.split()
        return len(parts) >= 4 and parts[0] == "postgres:" and parts[2] == database

    def auxiliary(title: str) -> bool:
        return title.startswith("postgres: ") and "(" not in title

    return cpu_seconds_of("postgres", title=backend_of), cpu_seconds_of("postgres", title=auxiliary)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, everything but idle/iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuBudget:
    """CPU seconds used during a phase: by this process, by the PostgreSQL backends of the
    phase's database and by the server's shared processes, by every keys process, and by the
    whole machine (on a shared machine, other work shows there and nowhere else)."""

    database: str
    wall: float
    this_process: float
    postgres_backends: float
    postgres_shared: float
    keys_processes: float
    machine: float

    @classmethod
    def start(cls, database: str) -> CpuBudget:
        backends, shared = postgres_cpu(database)
        return cls(
            database,
            time.perf_counter(),
            time.process_time(),
            backends,
            shared,
            own_keys_cpu(),
            machine_busy_seconds(),
        )

    def since(self, events: int) -> dict[str, float]:
        """µs of CPU per event, and the share of one core, for each side."""
        wall = time.perf_counter() - self.wall
        backends, shared = postgres_cpu(self.database)
        used = {
            "this_process": time.process_time() - self.this_process,
            f"postgres_{self.database}_backends": backends - self.postgres_backends,
            "postgres_shared": shared - self.postgres_shared,
            "keys_processes": own_keys_cpu() - self.keys_processes,
        }
        report = {f"{k}_us_per_event": round(v / events * 1e6, 1) for k, v in used.items()}
        report |= {f"{k}_cores": round(v / wall, 2) for k, v in used.items()}
        report["machine_busy_cores"] = round((machine_busy_seconds() - self.machine) / wall, 2)
        return report


# --- keys processes this benchmark owns -----------------------------------------------------
@dataclass
class KeysProcess:
    url: str
    port: int
    proc: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@asynccontextmanager
async def keys_process(
    stack: StackEndpoints, workdir: Path, name: str, **overrides: str
) -> AsyncIterator[KeysProcess]:
    """`python -m services.keys` on a free port with the stack's environment, ready; stopped
    (SIGTERM, then SIGKILL after `STOP_TIMEOUT_S`) when the block ends, whatever happened."""
    port = free_port()
    env = devstack_services.service_env(stack.kafka, stack.server_url, "keys")
    env.update({"KEYS_HTTP_PORT": str(port), "LOG_LEVEL": "WARNING", **overrides})
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.keys",
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
    process = KeysProcess(f"http://127.0.0.1:{port}", port, proc, log)
    try:
        await _wait_ready(process)
        yield process
    finally:
        await stop_process(proc)


async def _wait_ready(process: KeysProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.proc.returncode is not None:
                raise RuntimeError(f"keys process exited at start:\n{process.log_tail()}")
            try:
                answer = await client.get(f"{process.url}/ready")
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            await asyncio.sleep(0.2)
    raise RuntimeError(f"keys process not ready in {READY_TIMEOUT_S:.0f}s ({last})")


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM this one process, wait, SIGKILL if it lingers; reaps it either way."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary folder for logs and specs, removed at the end (its logs echoed on error)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as name:
        path = Path(name)
        try:
            yield path
        except BaseException:
            for log in sorted(path.glob("*.log")):
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                print(f"--- {log.name} (last lines) ---\n{tail}", file=sys.stderr)
            raise


# --- a bench account, cleaned up afterwards ---------------------------------------------------
@dataclass(frozen=True)
class BenchAccount:
    id: str
    admin_key: str | None
    """A key with every scope (None when the benchmark works below HTTP)."""

    @property
    def headers(self) -> dict[str, str]:
        if self.admin_key is None:
            raise RuntimeError("this bench account has no admin key")
        return {"Authorization": f"Bearer {self.admin_key}"}


@asynccontextmanager
async def bench_account(
    stack: StackEndpoints, prefix: str, with_admin_key: bool = True
) -> AsyncIterator[BenchAccount]:
    """A fresh account (`bench-<prefix>-<random>`), bootstrapped like `make admin-key`.

    Afterwards every key of the account still usable is revoked (its sealed secret is
    destroyed): the event store is append-only by design, so the events stay, but no
    working credential is left behind.
    """
    account_id = f"bench-{prefix}-{uuid.uuid4().hex[:10]}"
    admin_key = None
    if with_admin_key:
        output = await asyncio.to_thread(
            devstack_services.create_admin_key, account_id, stack.kafka, stack.server_url
        )
        admin_key = output.strip().splitlines()[-1]
    try:
        yield BenchAccount(account_id, admin_key)
    finally:
        await revoke_account(stack, account_id)


async def revoke_account(stack: StackEndpoints, account_id: str) -> int:
    """Revoke every key of `account_id` that is not revoked yet; returns how many."""
    pool = await asyncpg.create_pool(stack.keys_db, min_size=1, max_size=4)
    try:
        rows = await pool.fetch(
            "SELECT key_id FROM key_state WHERE account_id = $1 AND status <> 'revoked'",
            account_id,
        )
        uow = KeysUnitOfWork(lambda: pool)
        meta = Meta(
            actor=BENCH_ACTOR,
            occurred_at=datetime.now(UTC),
            correlation_id=f"bench-cleanup:{account_id}",
        )
        revoked = 0
        for row in rows:

            async def revoke(tx: KeysTransaction, key_id: uuid.UUID = row["key_id"]) -> Any:
                return await use_cases.revoke(tx, account_id, key_id, "benchmark cleanup", meta)

            with contextlib.suppress(errors.DomainError):
                await use_cases.in_transaction(uow, revoke)
                revoked += 1
        return revoked
    finally:
        await pool.close()


@dataclass(frozen=True)
class CreatedKey:
    id: uuid.UUID
    secret: str


async def create_keys_http(
    base_url: str,
    account: BenchAccount,
    count: int,
    name: str,
    concurrency: int = 8,
    attributes: dict[str, Any] | None = None,
) -> list[CreatedKey]:
    """`count` keys through `POST /v1/keys`, `concurrency` at a time, with `attributes`."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=account.headers, timeout=30) as http:

        async def one(i: int) -> CreatedKey:
            async with gate:
                body = {"name": f"{name}-{i}", **(attributes or {})}
                answer = await http.post("/v1/keys", json=body)
            if answer.status_code != 201:
                raise RuntimeError(f"create key: {answer.status_code} {answer.text[:300]}")
            body = answer.json()
            return CreatedKey(uuid.UUID(body["id"]), body["key"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


# --- reading topics as an outsider ------------------------------------------------------------
@dataclass
class TopicTail:
    """An independent reader (no consumer group) of `topics` from their end at `start()`.

    `on_record(record, read_at_perf_counter)` is called for each record as it is read.
    """

    bootstrap: str
    topics: Sequence[str]
    on_record: Callable[[Any, float], None]
    _consumer: Any = None
    _task: asyncio.Task[None] | None = None
    read: int = 0
    unreadable: int = 0

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            client_id=f"bench-tail-{uuid.uuid4().hex[:8]}",
        )
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            partitions = [
                TopicPartition(topic, p)
                for topic in self.topics
                for p in sorted(cluster.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                raise RuntimeError(f"none of {list(self.topics)} exists")
            consumer.assign(partitions)
            for tp, offset in (await consumer.end_offsets(partitions)).items():
                consumer.seek(tp, offset)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._loop(), name="bench-topic-tail")

    async def _loop(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=2000)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    self.read += 1
                    try:
                        self.on_record(record, now)
                    except (ValueError, KeyError, TypeError, AttributeError):
                        # Someone else's test put a broken message on a shared topic.
                        self.unreadable += 1

    async def stop(self) -> None:
        try:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        finally:
            if self._consumer is not None:
                await self._consumer.stop()

    async def __aenter__(self) -> TopicTail:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def consumer_group_members(bootstrap: str, group: str) -> int:
    """How many members the consumer group has now (0 when it has none or is unknown)."""
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415 - admin only here

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for response in described:
        for entry in response.groups:  # (error_code, group, state, ..., members, ...)
            return len(next((part for part in entry if isinstance(part, list)), []))
    return 0


# --- the publisher's progress ---------------------------------------------------------------
@dataclass(frozen=True)
class PublisherState:
    max_position: int
    unsequenced: int
    checkpoint: int

    @property
    def caught_up(self) -> bool:
        return self.unsequenced == 0 and self.checkpoint >= self.max_position


async def publisher_state(conn: Any) -> PublisherState:
    # The sequencer's own tables (migration 012), not the `events` view: both stay cheap
    # to ask however many events the store holds.
    row = await conn.fetchrow(
        "SELECT (SELECT coalesce(max(position), 0) FROM event_positions) AS top,"
        " (SELECT count(*) FROM events_unsequenced) AS todo,"
        " (SELECT position FROM publisher_checkpoint WHERE name = 'keys.events') AS done"
    )
    return PublisherState(int(row["top"]), int(row["todo"]), int(row["done"] or 0))


async def wait_publisher_caught_up(conn: Any, timeout: float) -> tuple[float, PublisherState]:
    """(seconds until every committed event is sequenced and published, last state seen)."""
    began = time.perf_counter()
    state = await publisher_state(conn)
    while not state.caught_up:
        if time.perf_counter() - began > timeout:
            raise TimeoutError(f"the publisher did not catch up in {timeout:.0f}s: {state}")
        await asyncio.sleep(0.01)
        state = await publisher_state(conn)
    return time.perf_counter() - began, state


# --- in-process use cases (below HTTP) --------------------------------------------------------
def system_meta(correlation: str, causation: str | None = None) -> Meta:
    return Meta(
        actor=BENCH_ACTOR,
        occurred_at=datetime.now(UTC),
        correlation_id=correlation,
        causation_id=causation,
    )


def tools() -> use_cases.SecretTools:
    return secret_tools(keys_settings())


# --- the load generator (runs in its own process) ---------------------------------------------
@dataclass(frozen=True)
class LoadRequest:
    """One prepared request; `expect` is a byte string its 200 body must contain."""

    kind: str
    raw: bytes
    expect: bytes


def http_request(
    method: str, path: str, port: int, headers: dict[str, str], body: bytes = b""
) -> bytes:
    """An HTTP/1.1 keep-alive request, fully serialised once, before the clock."""
    lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class LoadSpec:
    port: int
    connections: int
    warmup_s: float
    duration_s: float
    requests: list[LoadRequest]
    server_pid: int | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "port": self.port,
                "connections": self.connections,
                "warmup_s": self.warmup_s,
                "duration_s": self.duration_s,
                "server_pid": self.server_pid,
                "requests": [
                    [r.kind, r.raw.decode("latin-1"), r.expect.decode("latin-1")]
                    for r in self.requests
                ],
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> LoadSpec:
        data = orjson.loads(raw)
        return cls(
            port=data["port"],
            connections=data["connections"],
            warmup_s=data["warmup_s"],
            duration_s=data["duration_s"],
            server_pid=data["server_pid"],
            requests=[
                LoadRequest(kind, raw.encode("latin-1"), expect.encode("latin-1"))
                for kind, raw, expect in data["requests"]
            ],
        )


async def run_loadgen(spec: LoadSpec, workdir: Path, name: str) -> dict[str, Any]:
    """Run the load generator in a process of its own; returns its JSON report."""
    spec_path = workdir / f"{name}.spec.json"
    spec_path.write_bytes(spec.to_json())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.keys_support",
        "loadgen",
        str(spec_path),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    limit = spec.warmup_s + spec.duration_s + 60
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {err.decode()[-2000:]}")
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


@asynccontextmanager
async def trivial_server(mode: str) -> AsyncIterator[tuple[int, int]]:
    """A server that answers every request with the same small 200, in its own process:
    (port, pid); stopped when the block ends. `mode` is `echo-server` (a raw asyncio
    protocol: the load generator's own ceiling) or `asgi-server` (a bare ASGI callable under
    uvicorn with the services' settings: the floor of the services' HTTP stack)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.keys_support", mode, str(port), cwd=REPO_ROOT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{mode} did not start") from None
                await asyncio.sleep(0.1)
            else:
                writer.close()
                await writer.wait_closed()
                break
        yield port, proc.pid
    finally:
        await stop_process(proc)


_CONTENT_LENGTH: Final = re.compile(rb"content-length:[ \t]*(\d+)", re.IGNORECASE)


@dataclass
class _LoadState:
    spec: LoadSpec
    next_index: int = 0
    measuring: bool = False
    stopping: bool = False
    completed: int = 0
    errors: int = 0
    unexpected: int = 0
    lost: int = 0
    latencies: list[float] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    open_connections: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def next_request(self) -> LoadRequest:
        request = self.spec.requests[self.next_index]
        self.next_index = (self.next_index + 1) % len(self.spec.requests)
        return request

    def record(self, request: LoadRequest, status: int, body: bytes, seconds: float) -> None:
        if not self.measuring:
            return
        self.completed += 1
        self.latencies.append(seconds)
        self.by_kind[request.kind] = self.by_kind.get(request.kind, 0) + 1
        if status != 200:
            self.errors += 1
        elif request.expect not in body:
            self.unexpected += 1


class _LoadConnection(asyncio.Protocol):
    """One keep-alive connection, one request in flight (no pipelining)."""

    def __init__(self, state: _LoadState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.request: LoadRequest | None = None
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.state.open_connections += 1

    def send_next(self) -> None:
        if self.transport is None:
            return
        if self.state.stopping:
            self.transport.close()
            return
        self.request = self.state.next_request()
        self.sent_at = time.perf_counter()
        self.transport.write(self.request.raw)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            match = _CONTENT_LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            status = int(head[9:12])
            if self.request is not None:
                self.state.record(self.request, status, body, time.perf_counter() - self.sent_at)
            self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.open_connections -= 1
        if not self.state.stopping:
            self.state.lost += 1
        if self.state.open_connections == 0:
            self.state.drained.set()


def _maybe_cpu(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return cpu_seconds(pid)
    except (OSError, IndexError, ValueError):
        return None


async def _loadgen(spec: LoadSpec) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    state = _LoadState(spec)
    connections: list[_LoadConnection] = []
    for _ in range(spec.connections):
        _, protocol = await loop.create_connection(
            lambda: _LoadConnection(state), "127.0.0.1", spec.port
        )
        connections.append(protocol)
    for connection in connections:
        connection.send_next()
    await asyncio.sleep(spec.warmup_s)
    server_cpu0, client_cpu0 = _maybe_cpu(spec.server_pid), time.process_time()
    machine0 = machine_busy_seconds()
    began = time.perf_counter()
    state.measuring = True
    await asyncio.sleep(spec.duration_s)
    state.measuring = False
    seconds = time.perf_counter() - began
    server_cpu1, client_cpu1 = _maybe_cpu(spec.server_pid), time.process_time()
    machine_cores = (machine_busy_seconds() - machine0) / seconds
    state.stopping = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.drained.wait(), 10)
    server_cpu = None if server_cpu0 is None or server_cpu1 is None else server_cpu1 - server_cpu0
    return {
        "connections": spec.connections,
        "seconds": round(seconds, 3),
        "completed": state.completed,
        "per_s": state.completed / seconds,
        "p50_ms": percentile(state.latencies, 50) * 1000,
        "p90_ms": percentile(state.latencies, 90) * 1000,
        "p99_ms": percentile(state.latencies, 99) * 1000,
        "max_ms": max(state.latencies, default=float("nan")) * 1000,
        "errors": state.errors,
        "unexpected": state.unexpected,
        "lost_connections": state.lost,
        "by_kind": state.by_kind,
        "client_cpu_pct": round((client_cpu1 - client_cpu0) / seconds * 100, 1),
        "server_cpu_pct": None if server_cpu is None else round(server_cpu / seconds * 100, 1),
        "machine_busy_cores": round(machine_cores, 2),
        "server_cpu_us_per_request": (
            None if server_cpu is None else round(server_cpu / max(state.completed, 1) * 1e6, 1)
        ),
    }


class _EchoProtocol(asyncio.Protocol):
    RESPONSE: Final = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n"
        b'{"status":"ok"}'
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            match = _CONTENT_LENGTH.search(bytes(self.buffer[:end]))
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                return
            del self.buffer[:total]
            self.transport.write(self.RESPONSE)


async def _echo_server(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_EchoProtocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


async def _bare_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"15")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})


def _asgi_server(port: int) -> None:
    """The bare ASGI app under uvicorn as `servicekit.runtime.serve` configures it."""
    import uvicorn  # noqa: PLC0415 - only in this helper process

    uvicorn.run(
        _bare_asgi,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="off",
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.keys_support")
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("loadgen").add_argument("spec", type=Path)
    sub.add_parser("echo-server").add_argument("port", type=int)
    sub.add_parser("asgi-server").add_argument("port", type=int)
    args = parser.parse_args(argv)
    import uvloop  # noqa: PLC0415 - the fast loop only in these helper processes

    if args.mode == "loadgen":
        report = uvloop.run(_loadgen(LoadSpec.from_json(args.spec.read_bytes())))
        print(json.dumps(report), flush=True)
    elif args.mode == "asgi-server":
        _asgi_server(args.port)
    else:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(_echo_server(args.port))


if __name__ == "__main__":
    main()
