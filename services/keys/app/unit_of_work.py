"""The unit of work: one PostgreSQL transaction that owns an append, its read-model
updates, the sealed secret and the command's idempotency record, and runs the
after-commit callbacks (cache invalidation, publisher wake-up) only once it committed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from contracts import CommandResult
from services.keys.adapters import event_store, projections, queries
from services.keys.domain.errors import VersionConflict
from services.keys.domain.key import AccessKey, evolve, replay
from services.keys.domain.recorded import Change, Meta, RecordedEvent

AfterCommit = Callable[[list[RecordedEvent]], Awaitable[None]]


class KeysTransaction:
    def __init__(self, conn: Any, from_events: bool = False) -> None:
        self.conn = conn
        self.from_events = from_events
        self.recorded: list[RecordedEvent] = []
        self._states: dict[uuid.UUID, AccessKey | None] = {}
        """Keys' states known in this transaction: preloaded, or as our own appends left them."""

    async def preload(self, key_ids: Sequence[uuid.UUID]) -> None:
        """Read the states of `key_ids` in one query, for the loads of a batch to come."""
        if self.from_events:
            return
        missing = list({k for k in key_ids if k not in self._states})
        if missing:
            found = await queries.current_states(self.conn, missing)
            for key_id in missing:
                self._states[key_id] = found.get(key_id)

    async def load(self, key_id: uuid.UUID) -> AccessKey | None:
        """The key's current state, from its read model: a snapshot written in the same
        transactions as the events, so it is exactly their fold, without reading and
        folding a stream that grows with every change. Decisions stay safe: the append
        is still checked against the stream version this state has. After a conflict the
        state is folded from the events instead, so a read model that ever lagged behind
        cannot make a key conflict forever (and the append brings it up to date)."""
        if self.from_events:
            return await self.replay(key_id)
        if key_id in self._states:
            return self._states[key_id]
        return await queries.current_state(self.conn, key_id)

    async def replay(self, key_id: uuid.UUID) -> AccessKey | None:
        """The key's state folded from its events (the source of truth), for checks."""
        return replay(await event_store.stream(self.conn, key_id))

    async def previous_secret_last_used(self, key_id: uuid.UUID) -> datetime | None:
        """The last use of the secret the key's latest rotation replaced, as stored by
        every verifier (app/grace.py)."""
        return await queries.previous_secret_last_used(self.conn, key_id)

    async def append(
        self,
        key: AccessKey | None,
        key_id: uuid.UUID,
        account_id: str,
        changes: Sequence[Change],
        meta: Meta,
    ) -> AccessKey:
        """Append after the version `key` was loaded at; update the read models."""
        recorded = event_store.record(key_id, account_id, key.version if key else 0, changes, meta)
        states: list[AccessKey] = []
        state = key
        for event in recorded:
            state = evolve(state, event)
            states.append(state)
        if state is None:
            raise ValueError("append needs at least one change")
        # One round trip: the events, their place in the sequencer's queue and the key's
        # new state in key_state; then whatever else the events change (lookup, leaks).
        await event_store.append_recorded(self.conn, recorded, projections.state_upsert(state))
        for event, after in zip(recorded, states, strict=True):
            await projections.project(self.conn, after, event, state_written=True)
        self.recorded.extend(recorded)
        self._states[key_id] = state
        return state

    # --- the sealed secret (outside the event store, destroyed on revoke) ---------------
    async def seal(self, key_id: uuid.UUID, sealed: bytes) -> None:
        await self.conn.execute(
            "INSERT INTO key_vault (key_id, sealed) VALUES ($1, $2)"
            " ON CONFLICT (key_id) DO UPDATE SET sealed = EXCLUDED.sealed, sealed_at = now()",
            key_id,
            sealed,
        )

    async def sealed(self, key_id: uuid.UUID) -> bytes | None:
        value: bytes | None = await self.conn.fetchval(
            "SELECT sealed FROM key_vault WHERE key_id = $1", key_id
        )
        return value

    async def destroy_secret(self, key_id: uuid.UUID) -> None:
        await self.conn.execute("DELETE FROM key_vault WHERE key_id = $1", key_id)

    # --- idempotency of commands --------------------------------------------------------
    async def command_result(self, command_id: uuid.UUID) -> CommandResult | None:
        made = await self.request_made(command_id)
        return None if made is None else made[0]

    async def request_made(
        self, request_id: uuid.UUID
    ) -> tuple[CommandResult, bytes | None] | None:
        """A request made once before: its result and the digest of what it asked."""
        row = await self.conn.fetchrow(
            "SELECT result, request_digest FROM processed_commands WHERE command_id = $1",
            request_id,
        )
        if row is None:
            return None
        return CommandResult.model_validate_json(row["result"]), row["request_digest"]

    async def command_results(
        self, command_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, CommandResult]:
        """The stored results of those of `command_ids` processed before (one query)."""
        rows = await self.conn.fetch(
            "SELECT command_id, result FROM processed_commands WHERE command_id = ANY($1::uuid[])",
            list(command_ids),
        )
        return {r["command_id"]: CommandResult.model_validate_json(r["result"]) for r in rows}

    async def save_command_results(self, results: Sequence[tuple[str, str, CommandResult]]) -> None:
        """Store (account_id, command_type, result) of several commands in one statement;
        one already stored (by another process, concurrently) is a VersionConflict."""
        try:
            await self.conn.execute(
                "INSERT INTO processed_commands (command_id, account_id, command_type, result)"
                " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[])",
                [r.command_id for _, _, r in results],
                [account for account, _, _ in results],
                [command_type for _, command_type, _ in results],
                [r.model_dump_json() for _, _, r in results],
            )
        except asyncpg.UniqueViolationError:
            raise VersionConflict("a command of the batch was processed concurrently") from None

    async def save_command_result(
        self,
        command_id: uuid.UUID,
        account_id: str,
        command_type: str,
        result: CommandResult,
        request_digest: bytes | None = None,
    ) -> None:
        try:
            await self.conn.execute(
                "INSERT INTO processed_commands"
                " (command_id, account_id, command_type, result, request_digest)"
                " VALUES ($1, $2, $3, $4::jsonb, $5)",
                command_id,
                account_id,
                command_type,
                result.model_dump_json(),
                request_digest,
            )
        except asyncpg.UniqueViolationError:
            # Another process applied the same command concurrently; the retry reads its result.
            raise VersionConflict(f"command {command_id} was processed concurrently") from None


class KeysUnitOfWork:
    def __init__(self, pool: Callable[[], Any]) -> None:
        self._pool = pool
        self._after_commit: list[AfterCommit] = []

    def after_commit(self, callback: AfterCommit) -> None:
        """Run after every commit that appended events (e.g. drop cached verifications)."""
        self._after_commit.append(callback)

    @asynccontextmanager
    async def transaction(self, from_events: bool = False) -> AsyncIterator[KeysTransaction]:
        async with self._pool().acquire() as conn:
            tx = KeysTransaction(conn, from_events)
            async with conn.transaction():
                yield tx
        if tx.recorded:
            for callback in self._after_commit:
                await callback(tx.recorded)
