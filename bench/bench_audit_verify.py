"""audit_verify: `GET /v1/audit/verify` of an account's chain as it grows (10^4, 10^5, ...).

For each size, a fresh account gets an admin key (its KeyCreated is the chain's first
record, written by the service), then a valid chain of that many more records, sealed in
this process with the stack's audit key by the service's own code (`append_entries`) and
written with COPY, its head moved in the same transaction (the head locked, as the service
locks it). The verify answer is then timed over HTTP, as users call it; it must say the
chain is intact and name every record. The CPU time the audit process and this stack's
PostgreSQL backends spend on it, per record, is the figure that does not depend on what
else the machine is doing (the target: 10^6 records in 20 s on one free core). Afterwards
the account's records are removed the way retention removes them (as the tables' owner),
and its keys revoked.

Sizes: AUDIT_VERIFY_SIZES (comma-separated, default 10000,100000; add 1000000 for the
issue's largest). A --quick run does 10^3 and 10^4.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import httpx

from bench import keys_support as ks
from bench.bench_audit_ingest import cpu_by_process, cpu_used
from bench.harness import BenchContext, Figure, benchmark
from devstack import services as devstack_services
from servicekit.settings import database_url_for
from services.audit.adapters.chain_store import RECORD_COLUMNS, random_ids, record_row
from services.audit.domain.appending import append_entries
from services.audit.domain.chain import ChainKey
from services.audit.domain.entries import ActorRef, Entry
from services.audit.domain.records import ChainHead

AUDIT: Final = next(s for s in devstack_services.SERVICES if s.name == "audit")
SIZES_VARIABLE: Final = "AUDIT_VERIFY_SIZES"
CHUNK: Final = 20_000
"""Records sealed and copied at a time: memory stays flat however long the chain."""
TIMEOUT_S: Final = 600.0
PEOPLE: Final = [
    ActorRef("user", str(uuid.uuid4()), f"203.0.113.{i}", "Mozilla/5.0 (bench)") for i in range(20)
]
REASONS: Final = [
    '{"reason":"invoice unpaid"}',
    '{"reason":"paid"}',
    '{"before":{"scopes":["keys:verify"]},"after":{"scopes":["keys:verify","usage:read"]}}',
]
ACTIONS: Final = ["key.disabled", "key.enabled", "key.updated"]


def sizes(ctx: BenchContext) -> list[int]:
    if ctx.quick:
        return [1_000, 10_000]
    text = os.environ.get(SIZES_VARIABLE, "10000,100000")
    return [int(part) for part in text.split(",") if part.strip()]


@benchmark("audit_verify")
async def audit_verify(ctx: BenchContext) -> list[Figure]:
    if not AUDIT.process.running():
        raise RuntimeError("the audit service of the local stack is not running (make up)")
    stack = ks.endpoints(ctx.bootstrap)
    database = database_url_for("audit", stack.server_url)
    secret = (
        os.environ.get("AUDIT_CHECKPOINT_KEY")
        or devstack_services.local_secrets()["AUDIT_CHECKPOINT_KEY"]
    )  # as the service is given it (devstack.services.service_env)
    key = ChainKey(secret.encode())
    figures: list[Figure] = []
    per_record: dict[int, float] = {}
    cpu_us: dict[int, dict[str, float]] = {}
    for size in sizes(ctx):
        account_id: str | None = None
        try:
            async with ks.bench_account(stack, "verify") as account:
                account_id = account.id
                build_s = await build_chain(database, key, account.id, size)
                before = cpu_by_process(AUDIT.process.pid())
                seconds, checked = await timed_verify(account.headers, account.id)
                cpu = cpu_used(before, cpu_by_process(AUDIT.process.pid()))
        finally:  # once the admin key's revocation is recorded too
            if account_id is not None:
                await remove_chain(database, account_id, size + 2)
        if checked != size + 1:
            raise RuntimeError(f"verify checked {checked} records of {size + 1}")
        per_record[size] = seconds / checked * 1e6
        cpu_us[size] = {role: round(used / checked * 1e6, 2) for role, used in cpu.items()}
        ctx.note(**{f"build_s_{size}": round(build_s, 1)})
        figures += [
            ctx.figure(
                f"verify_s_{size}",
                seconds,
                "s",
                better="lower",
                target=20.0 * size / 1_000_000 if size >= 100_000 else None,
            ),
            ctx.figure(f"verify_records_per_s_{size}", checked / seconds, "rec/s"),
            ctx.figure(
                f"verify_cpu_us_per_record_{size}",
                cpu_us[size]["audit"] + cpu_us[size]["postgres"],
                "us",
                better="lower",
                target=20.0,  # 10^6 records in 20 s on one free core
            ),
        ]
    smallest, largest = min(per_record), max(per_record)
    if largest > smallest:  # linear: the cost of a record does not grow with the chain
        figures.append(
            ctx.figure(
                f"us_per_record_{largest}_over_{smallest}",
                per_record[largest] / per_record[smallest],
                "ratio",
                better="lower",
                target=1.5,
            )
        )
    ctx.note(
        us_per_record={str(s): round(v, 2) for s, v in per_record.items()},
        cpu_us_per_record={str(s): v for s, v in cpu_us.items()},
    )
    return figures


async def build_chain(database: str, key: ChainKey, account: str, size: int) -> float:
    """`size` valid records after the chain's first (the admin key's creation, written by
    the service); returns the seconds it took."""
    began = time.perf_counter()
    conn = await asyncpg.connect(database)
    try:
        await _recorded(conn, account, 1)
        key_ids = [uuid.uuid4() for _ in range(max(1, size // 10))]
        start = datetime.now(UTC) - timedelta(days=1)
        async with conn.transaction():
            row = await conn.fetchrow(
                "SELECT seq, hash FROM audit_chain_heads WHERE account_id = $1 FOR UPDATE",
                account,
            )
            head = ChainHead(account, row["seq"], row["hash"])
            for first in range(0, size, CHUNK):
                entries = [
                    _entry(account, head.seq + n + 1, key_ids, start)
                    for n in range(first, min(size, first + CHUNK))
                ]
                appended = append_entries(
                    key, {account: head}, entries, set(), {}, start, random_ids(len(entries))
                )
                head = appended.heads[account]
                await conn.copy_records_to_table(
                    "audit_records",
                    records=[record_row(r) for r in appended.records],
                    columns=RECORD_COLUMNS,
                )
            await conn.execute(
                "UPDATE audit_chain_heads SET seq = $2, hash = $3, updated_at = now()"
                " WHERE account_id = $1",
                account,
                head.seq,
                head.hash,
            )
        await conn.execute("ANALYZE audit_records")
    finally:
        await conn.close()
    return time.perf_counter() - began


async def _recorded(conn: Any, account: str, seq: int, timeout: float = 60.0) -> bool:
    """Wait until the account's chain reaches record `seq` (False if it did not in time)."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        head = await conn.fetchval(
            "SELECT seq FROM audit_chain_heads WHERE account_id = $1", account
        )
        if head is not None and head >= seq:
            return True
        await asyncio.sleep(0.1)
    return False


def _entry(account: str, seq: int, key_ids: list[uuid.UUID], start: datetime) -> Entry:
    kind = seq % len(ACTIONS)
    return Entry(
        source_id=f"bench-verify:{account}:{seq}",
        account_id=account,
        occurred_at=start + timedelta(microseconds=50 * seq),
        actor=PEOPLE[seq % len(PEOPLE)],
        action=ACTIONS[kind],
        key_id=key_ids[seq % len(key_ids)],
        outcome="success",
        correlation_id=f"bench-{seq}",
        causation_id=None,
        details=REASONS[kind],
    )


async def timed_verify(headers: dict[str, str], account: str) -> tuple[float, int]:
    """Seconds for the verify answer, and how many records it checked (it must be ok)."""
    async with httpx.AsyncClient(base_url=AUDIT.url, headers=headers, timeout=TIMEOUT_S) as client:
        began = time.perf_counter()
        response = await client.get("/v1/audit/verify")
        seconds = time.perf_counter() - began
    response.raise_for_status()
    report = response.json()
    if not report.get("valid"):
        raise RuntimeError(f"verify found {account}'s chain broken: {report}")
    return seconds, int(report["records_checked"])


async def remove_chain(database: str, account: str, last_seq: int) -> None:
    """The bench account's audit history goes (once it reached `last_seq`, or after a
    minute), as retention removes records (the owner, with `audit.retention` on): the
    bench leaves no chains behind."""
    conn = await asyncpg.connect(database)
    try:
        await _recorded(conn, account, last_seq)
        async with conn.transaction():
            await conn.execute("SET LOCAL audit.retention = 'on'")
            for table in ("audit_records", "audit_checkpoints", "audit_key_names"):
                await conn.execute(f"DELETE FROM {table} WHERE account_id = $1", account)  # noqa: S608 - our table names
            await conn.execute("DELETE FROM audit_chain_heads WHERE account_id = $1", account)
    finally:
        await conn.close()
