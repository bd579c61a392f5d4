"""Kafka entrypoints: commands from `keys.commands`, and every process's view of
`keys.events` (to drop cached verifications of a key that changed elsewhere)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from contracts import (
    INVALID_COMMAND,
    KEYS_COMMAND_RESULTS,
    KEYS_COMMANDS,
    KEYS_EVENTS,
    Command,
    CommandResult,
    Event,
    extract_command_id,
    parse_command,
)
from servicekit.consumer import Received, Record, Subscription, Then
from servicekit.runtime import Runtime
from services.keys.app import commands
from services.keys.app.context import KeysContext
from services.keys.domain.errors import VersionConflict
from services.keys.domain.recorded import Meta

GROUP_ID = "keys"


def command_subscription(runtime: Runtime, ctx: KeysContext) -> Subscription[Command]:
    results = runtime.writes(
        KEYS_COMMAND_RESULTS, CommandResult, "The outcome of each command, keyed by command_id."
    )

    async def publish(result: CommandResult) -> None:
        await results.send(result.model_dump_json().encode(), key=str(result.command_id).encode())

    async def reject_unreadable(record: Record, reason: str) -> bool:
        """A broken command with a readable command_id is answered, not dead-lettered."""
        command_id = extract_command_id(record.value or b"")
        if command_id is None:
            return False
        await publish(CommandResult.rejected(command_id, INVALID_COMMAND, reason))
        return True

    def meta_of(command: Command, now: datetime) -> Meta:
        correlation = command.correlation_id or str(command.command_id)
        return Meta(
            actor=command.actor,
            occurred_at=now,
            correlation_id=correlation,
            causation_id=str(command.command_id),
        )

    async def handle(batch: list[Received[Command]]) -> Then:
        # The whole batch in one transaction, in offset order per partition (so the
        # commands on one key, which share a partition, keep their order): its reads and
        # its write are one round trip each, and one commit, whatever the partitions. No
        # log line or context per command: the results carry each command's correlation id.
        now = datetime.now(UTC)
        done = await commands.execute_batch(
            ctx.uow,
            ctx.tools,
            [(item.message, meta_of(item.message, now)) for item in batch],
            ctx.leak_policy,
        )
        messages = [(str(r.command_id).encode(), r.model_dump_json().encode(), ()) for r in done]

        async def announce() -> None:
            await results.send_many(messages)

        # Results go out once every command of the batch is stored: one round trip, not one
        # per command, and the batch's offsets are committed after it. A crash before that
        # re-runs the batch, which finds the stored results. The next batch's transaction
        # does not wait for these broker round trips (`then_behind`).
        return announce

    return Subscription(
        topic=KEYS_COMMANDS,
        group_id=GROUP_ID,
        decode=parse_command,
        handle=handle,
        payload=Command,
        description="Commands from internal services (CreateKey, DisableKey, ...).",
        on_invalid=reject_unreadable,
        # A command that kept losing races on a busy key is tried again, never dead-lettered:
        # it has not taken effect and its command_id has no stored result yet.
        retryable=(VersionConflict,),
        wake_on_record=True,  # someone waits on every command: no idle poll in between
        # The next batch is fetched once this one is stored (all that came meanwhile: few,
        # large transactions) and taken while this one's results and offsets go out.
        then_behind=True,
    )


def _key_id_of_event(raw: bytes) -> uuid.UUID:
    """All a cache needs of an event is which key changed: no full validation per process."""
    try:
        return uuid.UUID(str(orjson.loads(raw)["key_id"]))
    except KeyError:
        raise ValueError("an event without key_id") from None


def cache_subscription(ctx: KeysContext) -> Subscription[uuid.UUID]:
    """Each process reads every event (no consumer group) from the moment it starts."""

    async def invalidate(batch: list[Received[uuid.UUID]]) -> None:
        for item in batch:
            ctx.verifier.invalidate(item.message)

    async def ignore_invalid(record: Record, reason: str) -> bool:
        return True  # the audit and usage groups dead-letter these; no need for a copy per process

    return Subscription(
        topic=KEYS_EVENTS,
        group_id=None,
        decode=_key_id_of_event,
        handle=invalidate,
        payload=Event,
        description="Key changes made by other processes: their cached answers are dropped.",
        on_invalid=ignore_invalid,
        auto_offset_reset="latest",
        wake_on_record=True,  # a changed key is refused here as soon as its event lands
    )
