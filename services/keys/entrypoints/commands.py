"""Kafka entrypoint: `keys.commands` in, results on `keys.command-results`."""

from __future__ import annotations

from contracts import (
    INVALID_COMMAND,
    KEYS_COMMAND_RESULTS,
    KEYS_COMMANDS,
    Command,
    CommandResult,
    extract_command_id,
    parse_command,
)
from servicekit.consumer import Received, Record, Subscription
from servicekit.inbox import record_consumed
from servicekit.runtime import Runtime

GROUP_ID = "keys"


def command_subscription(runtime: Runtime) -> Subscription[Command]:
    results = runtime.writes(
        KEYS_COMMAND_RESULTS, CommandResult, "The outcome of each command, keyed by command_id."
    )

    async def reject_unreadable(record: Record, reason: str) -> bool:
        """A broken command with a readable command_id is answered, not dead-lettered."""
        command_id = extract_command_id(record.value or b"")
        if command_id is None:
            return False
        result = CommandResult.rejected(command_id, INVALID_COMMAND, reason)
        await results.send(result.model_dump_json().encode(), key=str(command_id).encode())
        return True

    async def handle(batch: list[Received[Command]]) -> None:
        async with runtime.pool.acquire() as conn, conn.transaction():
            await record_consumed(conn, batch)

    return Subscription(
        topic=KEYS_COMMANDS,
        group_id=GROUP_ID,
        decode=parse_command,
        handle=handle,
        payload=Command,
        description="Commands from internal services (CreateKey, DisableKey, ...).",
        on_invalid=reject_unreadable,
    )
