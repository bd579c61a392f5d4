"""Limit decisions in the gateway's process: the platform's state per key from
``usage.limits`` plus the requests this process let in since that state.

The usage service counts every gateway's requests and publishes each key's state (and,
about once a second while clear, its counts). Between two states, this process counts its
own admissions, so it refuses a key once ``counted + admitted here >= limit`` without
waiting for the next state; the overshoot this leaves is bounded as the platform's own
verifiers bound it (the project's docs/limits.md).

Times are seconds since 1970 here (one float compare per limit on the hot path); the
states' ISO times are read once, when a state arrives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

RATE_WINDOW_SECONDS: Final[dict[str, int]] = {
    "rate_limit_per_minute": 60,
    "rate_limit_per_hour": 3600,
    "rate_limit_per_day": 86400,
}


def parse_time(text: str | None) -> float | None:
    """An ISO-8601 time of the platform (``...Z``) as seconds since 1970."""
    if not text:
        return None
    return datetime.fromisoformat(text).timestamp()


@lru_cache(maxsize=4096)
def format_time(at: float) -> str:
    """Seconds since 1970 as the platform writes times: ``2026-12-06T13:00:00.000000Z``."""
    moment = datetime.fromtimestamp(at, UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


STALE_SECONDS: Final = 300
"""A request let in longer ago than this is taken as counted by the next state."""


@dataclass(slots=True)
class _Window:
    counted: int
    reset_at: float


@dataclass(slots=True)
class _KeyLimits:
    as_of: float = float("-inf")
    state: str = "clear"
    limit_name: str | None = None
    until: float | None = None
    counted: int = 0
    windows: dict[str, _Window] = field(default_factory=dict)
    admitted: dict[tuple[str, float], int] = field(default_factory=dict)
    """Requests let in here and not yet counted in the state, per (limit name, window end)."""
    by_second: dict[tuple[str, float, int], int] = field(default_factory=dict)
    """The same per second let in: a new state took those up to its ``as_of``, not later."""


@dataclass(frozen=True, slots=True)
class LimitDecision:
    refused: str | None
    """``rate_limited`` or ``budget_exhausted``; None when the key may go on."""
    reset_at: float | None = None
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each limit after this request: ``{"limit", "remaining", "reset_at"}``."""


class LimitBook:
    """Every key's limit state as published on ``usage.limits``, and local admissions."""

    def __init__(self) -> None:
        self._keys: dict[str, _KeyLimits] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def apply(self, state: dict[str, Any]) -> None:
        """Keep ``state`` if it is not older than what is held (by ``as_of``)."""
        key_id = str(state["key_id"])
        as_of = parse_time(state["as_of"])
        if as_of is None:
            raise ValueError("a limit state without as_of")
        held = self._keys.get(key_id)
        if held is not None and held.as_of > as_of:
            return
        windows = {
            str(name): _Window(int(w["counted"]), parse_time(w["reset_at"]) or 0.0)
            for name, w in (state.get("windows") or {}).items()
        }
        fresh = _KeyLimits(
            as_of,
            str(state.get("state", "clear")),
            state.get("limit_name"),
            parse_time(state.get("until")),
            int(state.get("counted") or 0),
            windows,
        )
        if held is not None:  # what was let in after as_of is not in the state's counts yet
            for (name, end, second), count in held.by_second.items():
                if second >= int(as_of):
                    fresh.by_second[(name, end, second)] = count
                    fresh.admitted[(name, end)] = fresh.admitted.get((name, end), 0) + count
        self._keys[key_id] = fresh

    def decide(
        self, key_id: str, configured: dict[str, int], now: float | None = None
    ) -> LimitDecision:
        """The decision for a key whose limits are ``configured`` ({name: limit}), as if
        this request were let in (``remaining`` counts it)."""
        if not configured:
            return LimitDecision(None)
        now = time.time() if now is None else now
        held = self._keys.get(key_id) or _KeyLimits()
        if (
            held.state != "clear"
            and held.until is not None
            and held.until > now
            # A limit raised since (above what was counted) lets the key in at once.
            and configured.get(held.limit_name or "", 0) <= held.counted
        ):
            return LimitDecision(held.state, held.until)
        limits: dict[str, dict[str, Any]] = {}
        for name, limit in configured.items():
            window = held.windows.get(name)
            seconds = RATE_WINDOW_SECONDS.get(name)
            if seconds is not None:
                end = float((int(now) // seconds + 1) * seconds)
                counted = window.counted if window is not None and window.reset_at == end else 0
                used = counted + held.admitted.get((name, end), 0)
                if used >= limit:
                    return LimitDecision("rate_limited", end)
                remaining = limit - used - 1
            elif window is not None and window.reset_at > now:  # the token budget
                end, remaining = window.reset_at, max(0, limit - window.counted)
            else:
                limits[name] = {"limit": limit, "remaining": limit, "reset_at": None}
                continue
            limits[name] = {"limit": limit, "remaining": remaining, "reset_at": format_time(end)}
        return LimitDecision(None, None, limits)

    def admit(self, key_id: str, configured: dict[str, int], now: float | None = None) -> None:
        """Count one request let in here against each rate limit's current window."""
        now = time.time() if now is None else now
        held = self._keys.get(key_id)
        if held is None:
            held = self._keys[key_id] = _KeyLimits()
        admitted, by_second, second = held.admitted, held.by_second, int(now)
        for name in configured:
            seconds = RATE_WINDOW_SECONDS.get(name)
            if seconds is not None:
                end = float((second // seconds + 1) * seconds)
                admitted[(name, end)] = admitted.get((name, end), 0) + 1
                by_second[(name, end, second)] = by_second.get((name, end, second), 0) + 1
        if len(by_second) > 64:  # no state for a while: keep the totals, not every second
            held.admitted = {k: v for k, v in admitted.items() if k[1] > now}
            held.by_second = {
                k: v for k, v in by_second.items() if k[1] > now and k[2] > second - STALE_SECONDS
            }
