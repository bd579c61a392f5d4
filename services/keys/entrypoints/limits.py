"""Every process's view of `usage.limits`: each key's limit state, read from the start of
the compacted topic (the latest message per key is its state) into the process's
`LimitBook`, before the process says it is ready, and followed from then on."""

from __future__ import annotations

from contracts import USAGE_LIMITS, LimitState
from servicekit.consumer import Received, Record, Subscription
from servicekit.logging import get_logger
from services.keys.app.context import KeysContext

log = get_logger(__name__)


def limits_subscription(ctx: KeysContext) -> Subscription[LimitState]:
    async def take(batch: list[Received[LimitState]]) -> None:
        for item in batch:
            ctx.limits.observe(item.message)

    async def skip_invalid(record: Record, reason: str) -> bool:
        # Written by the usage service alone; a message it would not write is skipped by
        # every process rather than dead-lettered once per process (a tombstone too).
        log.warning(
            "limit_state_skipped", partition=record.partition, offset=record.offset, reason=reason
        )
        return True

    return Subscription(
        topic=USAGE_LIMITS,
        group_id=None,
        decode=LimitState.model_validate_json,
        handle=take,
        payload=LimitState,
        description="Each key's limit state, decided on by every process at verification.",
        on_invalid=skip_invalid,
        auto_offset_reset="earliest",
        batch_timeout_ms=5,
    )
