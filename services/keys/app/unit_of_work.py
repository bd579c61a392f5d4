"""The unit of work: what one change writes (an append, its read-model updates, the sealed
secret, the command's idempotency record) committed together, and the after-commit
callbacks (cache invalidation, publisher wake-up) run only once it committed. Most changes
are one statement (see KeysTransaction), which PostgreSQL commits atomically on its own:
no BEGIN and COMMIT round trips around it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from contracts import CommandResult
from services.keys.adapters import event_store, projections, queries
from services.keys.app import group_commit
from services.keys.domain.key import AccessKey, evolve, replay
from services.keys.domain.recorded import Change, Meta, RecordedEvent

AfterCommit = Callable[[list[RecordedEvent]], Awaitable[None]]


class KeysTransaction:
    """The work of one unit of work on one connection.

    `owned` (the unit of work's own transactions): no BEGIN until a statement needs one.
    The appends and command results are held back and written at the commit, all in one
    statement (events, the sequencer's queue, key_state, processed_commands): a single
    statement is atomic on its own, so work that only reads and appends costs its reads and
    one round trip, without BEGIN and COMMIT. A write that cannot wait (a sealed secret,
    the lookup of a new secret hash, ...) begins the transaction, writes what was held
    back, and the rest runs in it as usual. Reads before that run each in a snapshot of
    their own, as they would in a READ COMMITTED transaction; a decision stays safe
    because the append is checked against the stream version it was made on.
    Not owned (a connection in the caller's transaction): every write at once."""

    def __init__(
        self,
        conn: Any,
        from_events: bool = False,
        owned: bool = False,
        group: group_commit.GroupCommit | None = None,
        reads: group_commit.GroupRead | None = None,
    ) -> None:
        self.conn = conn
        self.from_events = from_events
        self.recorded: list[RecordedEvent] = []
        self._states: dict[uuid.UUID, AccessKey | None] = {}
        """Keys' states known in this transaction: preloaded, or as our own appends left them."""
        self._owned = owned
        self._hold = owned and not from_events
        """Appends and results wait for the commit (a replay reads events: none held back)."""
        self._tx: Any = None
        self._events: list[RecordedEvent] = []
        self._final: dict[uuid.UUID, AccessKey] = {}
        self._results: list[group_commit.Result] = []
        self._group = group if owned else None
        self._reads = reads if owned else None
        """Where the one statement of a change that needs no transaction is written, with
        those of other units of work on the same pool that wait meanwhile (group commit)."""

    async def _writing(self) -> Any:
        """The connection for a write that cannot wait: in the transaction, after what was
        held back."""
        if self._owned and self._tx is None:
            self._tx = self.conn.transaction()
            await self._tx.start()
        self._hold = False
        await self._flush()
        return self.conn

    async def _flush(self) -> None:
        if not (self._events or self._results):
            return
        append = group_commit.Append(self._events, self._final, self._results)
        self._events, self._final, self._results = [], {}, []
        if self._group is not None and self._tx is None:
            await self._group.append(self.conn, append)
        else:
            await group_commit.write(self.conn, append)

    async def commit(self) -> None:
        await self._flush()
        if self._tx is not None:
            await self._tx.commit()

    async def rollback(self) -> None:
        self._events, self._final, self._results = [], {}, []
        if self._tx is not None and self.conn.is_in_transaction():
            await self._tx.rollback()

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
        if self._reads is not None and self._tx is None:
            return await self._reads.read(self.conn, key_id)
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
        self._events.extend(recorded)
        self._final[key_id] = state
        self.recorded.extend(recorded)
        self._states[key_id] = state
        extra = [
            w
            for e, after in zip(recorded, states, strict=True)
            for w in projections.extra_writes(after, e)
        ]
        if extra or not self._hold:
            conn = await self._writing()
            for sql, args in extra:
                await conn.execute(sql, *args)
        return state

    # --- the sealed secret (outside the event store, destroyed on revoke) ---------------
    async def seal(self, key_id: uuid.UUID, sealed: bytes) -> None:
        await (await self._writing()).execute(
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
        await (await self._writing()).execute("DELETE FROM key_vault WHERE key_id = $1", key_id)

    # --- idempotency of commands --------------------------------------------------------
    async def command_result(self, command_id: uuid.UUID) -> CommandResult | None:
        made = await self.request_made(command_id)
        return None if made is None else made[0]

    async def request_made(
        self, request_id: uuid.UUID
    ) -> tuple[CommandResult, bytes | None] | None:
        """A request made once before: its result and the digest of what it asked."""
        if self._results:
            await self._writing()
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
        if self._results:
            await self._writing()
        rows = await self.conn.fetch(
            "SELECT command_id, result FROM processed_commands WHERE command_id = ANY($1::uuid[])",
            list(command_ids),
        )
        return {r["command_id"]: CommandResult.model_validate_json(r["result"]) for r in rows}

    async def command_results_and_preload(
        self, command_ids: Sequence[uuid.UUID], key_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, CommandResult]:
        """`command_results` of `command_ids` and `preload` of `key_ids`, in one query."""
        if self.from_events:
            return await self.command_results(command_ids)
        if self._results:
            await self._writing()
        missing = list({k for k in key_ids if k not in self._states})
        stored, found = await queries.stored_results_and_states(
            self.conn, list(command_ids), missing
        )
        for key_id in missing:
            self._states[key_id] = found.get(key_id)
        return {c: CommandResult.model_validate_json(result) for c, result in stored.items()}

    async def save_command_results(self, results: Sequence[tuple[str, str, CommandResult]]) -> None:
        """Store (account_id, command_type, result) of several commands, with the appends;
        one already stored (by another process, concurrently) is a VersionConflict."""
        self._results.extend(
            (result.command_id, account, kind, result, None) for account, kind, result in results
        )
        if not self._hold:
            await self._writing()

    async def save_command_result(
        self,
        command_id: uuid.UUID,
        account_id: str,
        command_type: str,
        result: CommandResult,
        request_digest: bytes | None = None,
    ) -> None:
        self._results.append((command_id, account_id, command_type, result, request_digest))
        if not self._hold:
            # Another process applied the same command concurrently: VersionConflict, and
            # the retry reads its result.
            await self._writing()


class KeysUnitOfWork:
    def __init__(self, pool: Callable[[], Any]) -> None:
        self._pool = pool
        self._after_commit: list[AfterCommit] = []
        self.group = group_commit.GroupCommit()
        """The one-statement appends of this unit of work's transactions, committed in
        groups (see app/group_commit.py)."""
        self.reads = group_commit.GroupRead()
        """The loads of keys' states outside a transaction, read in groups the same way."""

    def after_commit(self, callback: AfterCommit) -> None:
        """Run after every commit that appended events (e.g. drop cached verifications)."""
        self._after_commit.append(callback)

    @asynccontextmanager
    async def transaction(self, from_events: bool = False) -> AsyncIterator[KeysTransaction]:
        async with self._pool().acquire() as conn:
            tx = KeysTransaction(conn, from_events, owned=True, group=self.group, reads=self.reads)
            try:
                yield tx
                await tx.commit()
            except BaseException:
                await tx.rollback()
                raise
        if tx.recorded:
            for callback in self._after_commit:
                await callback(tx.recorded)
