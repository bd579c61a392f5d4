"""Point 9: random direct-SQL tamperings of the audit log, by the tables' owner (past the
append-only guard): an update of any column, a delete, an insert, a swap, a truncated tail
with the head rewound. Each on a chain of its own; verify detects every one."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import asyncpg

from devstack.services import local_secrets
from servicekit.kafka import KafkaProducer
from services.audit.adapters.chain_reader import snapshot
from services.audit.app.verification import verify_chain
from services.audit.domain.chain import ChainKey
from tests.faults.support import MARKS, report, scale
from tests.support.audit import key_stream, publish, wait_for_checkpoint
from tests.support.stack import Stack

pytestmark = MARKS
TAMPERINGS = scale(25, 100)
LENGTH = 8  # records per scratch chain: 2 keys, 4 events each
SEED = 20261126
COLUMNS = {  # column: an SQL expression of another value of the same type
    "actor_id": "actor_id || '-x'",
    "actor_type": "CASE actor_type WHEN 'user' THEN 'service' ELSE 'user' END",
    "action": "'key.revealed'",
    "key_name": "coalesce(key_name, '') || ' (edited)'",
    "outcome": "CASE outcome WHEN 'success' THEN 'failure' ELSE 'success' END",
    "occurred_at": "occurred_at + interval '1 second'",
    "correlation_id": "coalesce(correlation_id, '') || 'x'",
    "source_id": "'event:' || gen_random_uuid()",
    "details": "(details::jsonb || '{\"injected\": true}')::json",
    "hash": "sha256(hash)",
}
Tamper = Callable[[asyncpg.Connection, str, random.Random], Awaitable[str]]


async def update(conn: asyncpg.Connection, account: str, rng: random.Random) -> str:
    column, seq = rng.choice(sorted(COLUMNS)), rng.randint(1, LENGTH)
    await conn.execute(
        f"UPDATE audit_records SET {column} = {COLUMNS[column]} WHERE account_id = $1 AND seq = $2",  # noqa: S608 - a constant column
        account,
        seq,
    )
    return f"update {column} of {seq}"


async def delete(conn: asyncpg.Connection, account: str, rng: random.Random) -> str:
    seq = rng.randint(1, LENGTH - 1)
    await conn.execute("DELETE FROM audit_records WHERE account_id = $1 AND seq = $2", account, seq)
    return f"delete {seq}"


async def insert(conn: asyncpg.Connection, account: str, rng: random.Random) -> str:
    """Make room at `seq` and put there a plausible copy of its predecessor."""
    seq = rng.randint(2, LENGTH)
    await conn.execute(
        "UPDATE audit_records SET seq = seq + 1000 WHERE account_id = $1 AND seq >= $2",
        account,
        seq,
    )
    await conn.execute(
        "UPDATE audit_records SET seq = seq - 999 WHERE account_id = $1 AND seq > 1000", account
    )
    await conn.execute(
        "INSERT INTO audit_records SELECT account_id, $2::bigint, gen_random_uuid(),"
        " 'event:' || gen_random_uuid(), occurred_at, recorded_at, actor_type, actor_id,"
        " actor_ip, actor_user_agent, action, key_id, key_name, outcome,"
        " correlation_id, causation_id, details, hash, sha256(hash)"
        " FROM audit_records WHERE account_id = $1 AND seq = $2::bigint - 1",
        account,
        seq,
    )
    return f"insert at {seq}"


async def swap(conn: asyncpg.Connection, account: str, rng: random.Random) -> str:
    a, b = sorted(rng.sample(range(1, LENGTH + 1), 2))
    for old, new in ((a, 1000), (b, a), (1000, b)):
        await conn.execute(
            "UPDATE audit_records SET seq = $3 WHERE account_id = $1 AND seq = $2",
            account,
            old,
            new,
        )
    return f"swap {a} and {b}"


async def truncate_tail(conn: asyncpg.Connection, account: str, rng: random.Random) -> str:
    """Delete the newest records and rewind the head: only the checkpoint remembers."""
    keep = LENGTH - rng.randint(1, 3)
    await conn.execute(
        "DELETE FROM audit_records WHERE account_id = $1 AND seq > $2", account, keep
    )
    await conn.execute(
        "UPDATE audit_chain_heads SET seq = $2, hash = (SELECT hash FROM audit_records"
        " WHERE account_id = $1 AND seq = $2) WHERE account_id = $1",
        account,
        keep,
    )
    return f"truncate after {keep}"


TAMPERS: list[Tamper] = [update, delete, insert, swap, truncate_tail]


async def test_every_random_tampering_is_detected_by_verify(
    stack: Stack, producer: KafkaProducer, db: dict[str, asyncpg.Connection]
) -> None:
    accounts = [f"tamper-{uuid.uuid4().hex[:12]}" for _ in range(TAMPERINGS)]
    for account in accounts:
        await publish(producer, key_stream(account, keys=2, per_key=LENGTH // 2).events)
    for account in accounts:  # a checkpoint at LENGTH: all LENGTH records are chained
        await wait_for_checkpoint(db["audit"], account, LENGTH, timeout=60)

    key = ChainKey(local_secrets()["AUDIT_CHECKPOINT_KEY"].encode())
    pool = await asyncpg.create_pool(stack.database("audit"), min_size=1, max_size=2)
    rng = random.Random(SEED)  # noqa: S311 - reproducible tamperings, not a secret
    done: list[str] = []
    missed: list[str] = []
    codes: Counter[str] = Counter()
    try:
        async with snapshot(pool) as reader:
            before = [await verify_chain(reader, key, a) for a in accounts]
        assert all(v.broken is None for v in before), "every scratch chain starts valid"
        for account in accounts:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                what = await rng.choice(TAMPERS)(conn, account, rng)
            done.append(what)
            async with snapshot(pool) as reader:
                verdict = await verify_chain(reader, key, account)
            if verdict.broken is None:
                missed.append(f"{account}: {what}")
            else:
                codes[verdict.broken.code] += 1
    finally:
        await pool.close()

    kinds = Counter(what.split()[0] for what in done)
    report(
        "tampering",
        9,
        "random direct-SQL tamperings of the audit log",
        f"tamperings {len(done)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))});"
        f" detected {len(done) - len(missed)}/{len(done)} (as {dict(sorted(codes.items()))});"
        f" seed {SEED}",
        tamperings=len(done),
        detected=len(done) - len(missed),
        kinds=dict(kinds),
        codes=dict(codes),
    )
    assert len(done) == TAMPERINGS
    assert missed == []
