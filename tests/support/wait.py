"""Wait for a condition with a deadline, instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout: float = 60.0,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Call `probe` until it returns a truthy value; fail with `what` after `timeout`.
    `probe` is called at least once, even with no time left."""
    deadline = time.monotonic() + timeout
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


CACHE_SECONDS = 30.0
"""How long the services serve a cached verification of a key (KEYS_CACHE_TTL_SECONDS and
AUDIT_CALLER_CACHE_SECONDS, whose defaults the stack runs with)."""


def until_the_cache_expires(cached_since: float, margin: float = 2.0) -> float:
    """Seconds left before an answer cached by a request sent at `cached_since` (a
    time.monotonic() read before that request) may expire by itself. A change seen within
    them was the invalidation's doing, however loaded the machine: the deadline for a wait
    that proves it, rather than a guess of how long the invalidation takes."""
    return max(0.0, cached_since + CACHE_SECONDS - margin - time.monotonic())
