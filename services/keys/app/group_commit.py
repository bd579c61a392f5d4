"""Group commit: appends that arrive while another is in flight share one statement.

Every append of the unit of work that is one statement on its own (events, the
sequencer's queue, key_state, the commands' results: see KeysTransaction) pays one
logged commit, and PostgreSQL spends most of an append's time flushing it (issue 14).
Appends that come while one is in flight on the same unit of work wait for it, then the
first of them (the leader) writes them all in ONE statement on its own connection: one
commit for the group. Nothing waits for a timer: a lone append goes at once, and a group
holds only what was already waiting.

Each append keeps its own semantics:
- atomic on its own: the group is one statement, so all of it commits or none;
- its own optimistic concurrency: two appends to the same key (or with the same command
  id) never share a group, so a conflict in a group is with a committed row, which
  PostgreSQL names (the key or command id in the unique violation's detail). That append
  alone fails, with the VersionConflict it gets today, and the others are written again
  as a group; a failure the detail does not pin on one append sends every append of the
  group back to its own writer, to be written alone as today (the bad one fails alone);
  a connection lost mid-statement gives each the error it would get alone (the outcome
  unknown, as for an append alone: the idempotency records settle a retry);
- its own result: each writer's unit of work gets its outcome, then runs its after-commit
  callbacks (cache invalidation, publisher wake-up) as before;
- commit order = publish order, nothing published uncommitted: the events are queued for
  the sequencer in the group's statement and sequenced only once committed, as before.
A leader's write runs to its end even if the leader is cancelled, so no writer waits for
an outcome that never comes (the leader's cancellation is raised after it).

The loads before the appends (each key's state from its read model) are coalesced the
same way (GroupRead): the reads that come while one is in flight are one query.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeVar

import asyncpg

from contracts import CommandResult
from services.keys.adapters import event_store, projections, queries
from services.keys.domain.key import AccessKey
from services.keys.domain.recorded import RecordedEvent

T = TypeVar("T")
Result = tuple[uuid.UUID, str, str, CommandResult, bytes | None]
"""A command's result to store: (command_id, account_id, command_type, result, digest)."""

MAX_GROUP: Final = 128
"""At most this many appends in one statement (a pool has far fewer connections)."""


@dataclass(eq=False, slots=True)
class Append:
    """What one unit of work writes in its one statement."""

    events: list[RecordedEvent]
    final: dict[uuid.UUID, AccessKey]
    """Each key's state after the events (the read model's new row)."""
    results: list[Result]
    outcome: asyncio.Future[object] | None = field(default=None)

    def keys(self) -> set[uuid.UUID]:
        return {e.key_id for e in self.events} | self.final.keys()

    def commands(self) -> set[uuid.UUID]:
        return {command_id for command_id, *_ in self.results}


_RESULTS_INSERT = (
    "INSERT INTO processed_commands"
    " (command_id, account_id, command_type, result, request_digest)"
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::bytea[])"
)


def _results_insert(results: Sequence[Result]) -> event_store.Then:
    return _RESULTS_INSERT, [
        [command_id for command_id, *_ in results],
        [account for _, account, *_ in results],
        [kind for _, _, kind, *_ in results],
        [r.model_dump_json() for *_, r, _ in results],
        [digest for *_, digest in results],
    ]


def _statement(appends: Sequence[Append]) -> tuple[list[RecordedEvent], list[event_store.Then]]:
    events = [e for a in appends for e in a.events]
    then: list[event_store.Then] = []
    states = [s for a in appends for s in a.final.values()]
    if states:
        then.append(projections.states_upsert(states))
    results = [r for a in appends for r in a.results]
    if results:
        then.append(_results_insert(results))
    return events, then


async def write(conn: Any, append: Append) -> None:
    """Write one append in one statement (a stale version: VersionConflict)."""
    await event_store.append_recorded(conn, *_statement([append]))


class _Alone:
    """An outcome when a group could not be done: each does its own alone."""


_ALONE: Final = _Alone()
_LEAD: Final = object()
"""A waiting item's turn to lead the next group."""


class _Waits(Protocol):
    outcome: asyncio.Future[object] | None


W = TypeVar("W", bound=_Waits)


class _Coalescer(Generic[W]):
    """Items that come while a group is in flight wait for it; then the first of them leads
    the next group, on its own connection. A lone item goes at once (no timer)."""

    def __init__(self) -> None:
        self._waiting: deque[W] = deque()
        self._leading = False
        self.asked = 0
        self.statements = 0
        """Items asked for, and the statements leaders sent for them (groups, retries and
        the ones left alone): for tests and benches."""

    @property
    def waiting(self) -> int:
        """Items waiting for the group in flight."""
        return len(self._waiting)

    async def _submit(self, conn: Any, item: W) -> object:
        """`item`'s outcome from its group (an error as a value), or _ALONE."""
        self.asked += 1
        if self._leading:
            item.outcome = asyncio.get_running_loop().create_future()
            self._waiting.append(item)
            try:
                outcome = await asyncio.shield(item.outcome)
            except asyncio.CancelledError:
                self._abandon(item)
                raise
            if outcome is not _LEAD:
                return outcome
        self._leading = True
        return await _to_the_end(self._lead(conn, item))

    def _abandon(self, item: W) -> None:
        """A waiting writer was cancelled: out of the queue, or its turn to lead passed on
        (an item already in a group in flight is done: its outcome goes unread)."""
        if item in self._waiting:
            self._waiting.remove(item)
        elif item.outcome is not None and item.outcome.done() and item.outcome.result() is _LEAD:
            self._hand_over()

    async def _lead(self, conn: Any, own: W) -> object:
        """Do `own` with the items waiting (as many as can share a statement), give each its
        outcome, hand the lead to the next one waiting; return `own`'s outcome."""
        try:
            group = self._take(own)
            outcomes = await self._run(conn, group)
            for item, outcome in zip(group[1:], outcomes[1:], strict=True):
                if item.outcome is not None and not item.outcome.done():
                    item.outcome.set_result(outcome)
            return outcomes[0]
        finally:
            self._hand_over()

    def _take(self, own: W) -> list[W]:
        group = [own]
        while self._waiting and len(group) < MAX_GROUP:
            group.append(self._waiting.popleft())
        return group

    async def _run(self, conn: Any, group: list[W]) -> list[object]:
        raise NotImplementedError

    def _hand_over(self) -> None:
        while self._waiting:
            nxt = self._waiting.popleft()
            if nxt.outcome is not None and not nxt.outcome.done():
                nxt.outcome.set_result(_LEAD)
                return
        self._leading = False


class GroupCommit(_Coalescer[Append]):
    """The appends in flight on one unit of work's pool, and those waiting for them."""

    @property
    def appends(self) -> int:
        return self.asked

    async def append(self, conn: Any, append: Append) -> None:
        """Write `append` on `conn` (a connection of the pool, outside any transaction),
        with whatever arrives while another group is in flight: returns once committed,
        raises what it would raise written alone."""
        outcome = await self._submit(conn, append)
        if outcome is _ALONE:
            await write(conn, append)
        elif isinstance(outcome, BaseException):
            raise outcome

    def _take(self, own: Append) -> list[Append]:
        """`own` and the waiting appends that touch neither its keys nor its commands nor
        those of another taken before them (in arrival order); the others wait on."""
        group = [own]
        keys, commands = own.keys(), own.commands()
        left: deque[Append] = deque()
        while self._waiting:
            append = self._waiting.popleft()
            its_keys, its_commands = append.keys(), append.commands()
            if (
                len(group) < MAX_GROUP
                and keys.isdisjoint(its_keys)
                and commands.isdisjoint(its_commands)
            ):
                group.append(append)
                keys |= its_keys
                commands |= its_commands
            else:
                left.append(append)
        self._waiting = left
        return group

    async def _run(self, conn: Any, group: list[Append]) -> list[object]:
        """Each append's outcome: None (committed), the error it fails with, or _ALONE
        (not written: to be written alone by its own writer)."""
        outcomes: list[object] = [_ALONE] * len(group)
        todo = list(range(len(group)))
        while len(todo) > 1:
            self.statements += 1
            try:
                await event_store.execute_append(conn, *_statement([group[i] for i in todo]))
            except asyncpg.UniqueViolationError as exc:
                culprit = _culprit(exc, [group[i] for i in todo])
                conflict = event_store.version_conflict(exc)
                if culprit is None or conflict is None:
                    return outcomes  # each alone
                outcomes[todo.pop(culprit)] = conflict
                continue
            except (asyncpg.PostgresError, asyncpg.DataError):
                # Refused as a whole (by the server, or before it was sent): nothing was
                # written, and nothing says which append it was: each alone.
                return outcomes
            except Exception as exc:  # handed to each writer, as its own
                # The connection failed: the outcome is unknown, as it would be for each
                # append written alone on a connection that failed.
                for i in todo:
                    outcomes[i] = exc
                return outcomes
            for i in todo:
                outcomes[i] = None
            return outcomes
        for i in todo:  # the one left: written as it is alone
            self.statements += 1
            try:
                await write(conn, group[i])
                outcomes[i] = None
            except Exception as exc:  # its own error, raised by its writer
                outcomes[i] = exc
        return outcomes


@dataclass(eq=False, slots=True)
class _Read:
    key_id: uuid.UUID
    outcome: asyncio.Future[object] | None = None


class GroupRead(_Coalescer[_Read]):
    """The loads of keys' states (their read model) in flight on one unit of work's pool,
    and those waiting for them: read in one query by the next leader. A read that waited
    sees the state as of its group's query, which starts after it was asked for: never
    older than a read of its own would have seen."""

    async def read(self, conn: Any, key_id: uuid.UUID) -> AccessKey | None:
        outcome = await self._submit(conn, _Read(key_id))
        if outcome is _ALONE:
            return await queries.current_state(conn, key_id)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome if isinstance(outcome, AccessKey) else None

    async def _run(self, conn: Any, group: list[_Read]) -> list[object]:
        self.statements += 1
        if len(group) == 1:
            try:
                return [await queries.current_state(conn, group[0].key_id)]
            except Exception as exc:  # its own error, raised by its reader
                return [exc]
        try:
            found = await queries.current_states(conn, list({r.key_id for r in group}))
        except (asyncpg.PostgresError, asyncpg.DataError):
            return [_ALONE] * len(group)  # each reads alone, and gets its own error
        except Exception as exc:  # the connection failed: as it would have for each
            return [exc] * len(group)
        return [found.get(r.key_id) for r in group]


def _culprit(exc: asyncpg.UniqueViolationError, appends: Sequence[Append]) -> int | None:
    """The index of the one append of `appends` the conflict names, if it names one."""
    taken = event_store.taken(exc)
    if taken is None:
        return None
    what, taken_id = taken
    named = [
        n
        for n, append in enumerate(appends)
        if taken_id in (append.keys() if what == "key" else append.commands())
    ]
    return named[0] if len(named) == 1 else None


async def _to_the_end(work: Awaitable[T]) -> T:
    """`work`'s result, awaited to its end even if the caller is cancelled meanwhile (the
    cancellation is raised after it)."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                break
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()
