"""Writing the chains: lock the heads, skip what is recorded, append, move the heads.

Everything of one batch happens in one transaction, with the heads of its chains locked
FOR UPDATE (in account order, so two writers never wait on each other in a circle): two
audit processes appending to one chain take turns, and a sequence number is never used
twice or skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

from asyncpg.pgproto.pgproto import UUID as _DatabaseUUID

from services.audit.domain.appending import KeyName
from services.audit.domain.chain import GENESIS
from services.audit.domain.records import AuditRecord, ChainHead

SOURCE_UNIQUE: Final = "audit_records_source_unique"
"""The constraint that refuses a source recorded twice (see the migration)."""
RECORD_COLUMNS: Final = (
    "account_id",
    "seq",
    "audit_id",
    "source_id",
    "occurred_at",
    "recorded_at",
    "actor_type",
    "actor_id",
    "actor_ip",
    "actor_user_agent",
    "action",
    "key_id",
    "key_name",
    "outcome",
    "correlation_id",
    "causation_id",
    "details",
    "prev_hash",
    "hash",
)


_VERSION_4: Final = bytes((b & 0x0F) | 0x40 for b in range(256))
"""`bytes.translate` table: the byte that holds a uuid's version, made version 4."""
_RFC_4122: Final = bytes((b & 0x3F) | 0x80 for b in range(256))
"""`bytes.translate` table: the byte that holds a uuid's variant, made RFC 4122's."""


def random_ids(count: int) -> Callable[[], uuid.UUID]:
    """A source of `count` random (version 4) uuids, for the records of one batch: one
    read of the system's randomness for all of them, each built as asyncpg builds the uuids
    it reads (a `uuid.UUID`, made in C): a fraction of what `uuid.uuid4()` costs each. The
    version and variant bits of all of them are set by two translations of the bytes that
    hold them (in C), not a Python expression per byte."""
    random = bytearray(os.urandom(16 * count))
    random[6::16] = random[6::16].translate(_VERSION_4)
    random[8::16] = random[8::16].translate(_RFC_4122)
    whole = bytes(random)
    return map(_DatabaseUUID, [whole[i : i + 16] for i in range(0, 16 * count, 16)]).__next__


def record_row(r: AuditRecord) -> tuple[Any, ...]:
    actor = r.actor
    return (
        r.account_id,
        r.seq,
        r.audit_id,
        r.source_id,
        r.occurred_at,
        r.recorded_at,
        actor.type if actor else None,
        actor.id if actor else None,
        actor.ip if actor else None,
        actor.user_agent if actor else None,
        r.action,
        r.key_id,
        r.key_name,
        r.outcome,
        r.correlation_id,
        r.causation_id,
        r.details,
        r.prev_hash,
        r.hash,
    )


class ChainTransaction:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def lock_heads(self, accounts: Iterable[str]) -> dict[str, ChainHead]:
        """The heads of these chains, locked until commit; missing ones start at GENESIS."""
        wanted = sorted(set(accounts))
        heads = await self._locked(wanted)
        missing = [a for a in wanted if a not in heads]
        if missing:
            await self.conn.execute(
                "INSERT INTO audit_chain_heads (account_id, seq, hash)"
                " SELECT a, 0, $2 FROM unnest($1::text[]) AS a ON CONFLICT DO NOTHING",
                missing,
                GENESIS,
            )
            heads = await self._locked(wanted)
        return heads

    async def _locked(self, accounts: list[str]) -> dict[str, ChainHead]:
        rows = await self.conn.fetch(
            "SELECT account_id, seq, hash FROM audit_chain_heads"
            " WHERE account_id = ANY($1::text[]) ORDER BY account_id FOR UPDATE",
            accounts,
        )
        return {r["account_id"]: ChainHead(r["account_id"], r["seq"], r["hash"]) for r in rows}

    async def recorded(self, source_ids: Sequence[str]) -> set[str]:
        rows = await self.conn.fetch(
            "SELECT source_id FROM audit_records WHERE source_id = ANY($1::text[])", source_ids
        )
        return {r["source_id"] for r in rows}

    async def key_names(self, key_ids: Iterable[uuid.UUID | str]) -> dict[uuid.UUID, str]:
        """Current names by key id (given as UUIDs or their text)."""
        rows = await self.conn.fetch(
            "SELECT key_id, name FROM audit_key_names WHERE key_id = ANY($1::uuid[])",
            list(set(key_ids)),
        )
        return {r["key_id"]: r["name"] for r in rows}

    async def append(self, records: Sequence[AuditRecord]) -> None:
        if records:
            await self.conn.copy_records_to_table(
                "audit_records", records=[record_row(r) for r in records], columns=RECORD_COLUMNS
            )

    async def move_heads(self, heads: Iterable[ChainHead]) -> None:
        moved = list(heads)
        if moved:
            await self.conn.execute(
                "UPDATE audit_chain_heads AS h SET seq = m.seq, hash = m.hash, updated_at = now()"
                " FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS m(account_id, seq, hash)"
                " WHERE h.account_id = m.account_id",
                [h.account_id for h in moved],
                [h.seq for h in moved],
                [h.hash for h in moved],
            )

    async def remember_names(self, names: dict[uuid.UUID, KeyName]) -> None:
        if names:
            await self.conn.execute(
                "INSERT INTO audit_key_names (key_id, account_id, name, stream_version)"
                " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[])"
                " ON CONFLICT (key_id) DO UPDATE"
                " SET name = EXCLUDED.name, stream_version = EXCLUDED.stream_version"
                " WHERE audit_key_names.stream_version < EXCLUDED.stream_version",
                list(names),
                [n.account_id for n in names.values()],
                [n.name for n in names.values()],
                [n.version for n in names.values()],
            )


class ChainStore:
    def __init__(self, pool: Callable[[], Any]) -> None:
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ChainTransaction]:
        async with self._pool().acquire() as conn, conn.transaction():
            yield ChainTransaction(conn)
