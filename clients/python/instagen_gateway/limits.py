"""Limit decisions in the gateway's process: the platform's state per key from
``usage.limits`` plus the requests this process let in since that state.

The usage service counts every gateway's requests and publishes each key's state (and,
about once a second while clear, its counts). Between two states, this process counts its
own admissions, so it refuses a key once ``counted + admitted here >= limit`` without
waiting for the next state: the overshoot across all gateways is bounded by what the
others admit in the time one state takes to travel (docs/limits.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

RATE_WINDOWS: Final[dict[str, timedelta]] = {
    "rate_limit_per_minute": timedelta(minutes=1),
    "rate_limit_per_hour": timedelta(hours=1),
    "rate_limit_per_day": timedelta(days=1),
}


def window_end(limit_name: str, now: datetime) -> datetime | None:
    """The end of the fixed UTC window of a rate limit that holds ``now``."""
    if limit_name == "rate_limit_per_minute":
        return now.replace(second=0, microsecond=0) + RATE_WINDOWS[limit_name]
    if limit_name == "rate_limit_per_hour":
        return now.replace(minute=0, second=0, microsecond=0) + RATE_WINDOWS[limit_name]
    if limit_name == "rate_limit_per_day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0) + RATE_WINDOWS[limit_name]
    return None


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text).astimezone(UTC)


def _as_of(state: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(state["as_of"])).astimezone(UTC)


def format_time(at: datetime) -> str:
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass(slots=True)
class _KeyLimits:
    state: dict[str, Any] | None = None
    admitted: dict[tuple[str, datetime], int] = field(default_factory=dict)
    """Requests let in here since ``state``, per (limit name, window end)."""


@dataclass(frozen=True, slots=True)
class LimitDecision:
    refused: str | None
    """``rate_limited`` or ``budget_exhausted``; None when the key may go on."""
    reset_at: datetime | None = None
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)


class LimitBook:
    """Every key's limit state as published on ``usage.limits``, and local admissions."""

    def __init__(self) -> None:
        self._keys: dict[str, _KeyLimits] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def apply(self, state: dict[str, Any]) -> None:
        """Keep ``state`` if it is newer than what is held (by ``as_of``)."""
        key_id = str(state["key_id"])
        held = self._keys.setdefault(key_id, _KeyLimits())
        if held.state is not None and _as_of(held.state) > _as_of(state):
            return
        held.state = state
        held.admitted.clear()

    def decide(
        self, key_id: str, configured: dict[str, int], now: datetime | None = None
    ) -> LimitDecision:
        """The decision for a key whose limits are ``configured`` ({name: limit})."""
        if not configured:
            return LimitDecision(None)
        now = now or datetime.now(UTC)
        held = self._keys.get(key_id) or _KeyLimits()
        state = held.state or {}
        until = parse_time(state.get("until"))
        limited = state.get("state", "clear") != "clear" and until is not None and until > now
        # A limit raised since (above what was counted) lets the key in at once.
        raised = configured.get(str(state.get("limit_name")), 0) > int(state.get("counted") or 0)
        if limited and not raised:
            return LimitDecision(str(state["state"]), until)
        windows: dict[str, Any] = state.get("windows") or {}
        limits: dict[str, dict[str, Any]] = {}
        refused: LimitDecision | None = None
        for name, limit in configured.items():
            counted_window = windows.get(name) or {}
            reset_at = parse_time(counted_window.get("reset_at"))
            end = window_end(name, now) or (reset_at if reset_at and reset_at > now else None)
            counted = int(counted_window.get("counted", 0)) if reset_at == end else 0
            here = held.admitted.get((name, end), 0) if end is not None else 0
            remaining = max(0, limit - counted - here)
            limits[name] = {
                "limit": limit,
                "remaining": remaining,
                "reset_at": format_time(end) if end else None,
            }
            if remaining <= 0 and name in RATE_WINDOWS and refused is None:
                refused = LimitDecision("rate_limited", end)
        return refused or LimitDecision(None, None, limits)

    def admit(self, key_id: str, configured: dict[str, int], now: datetime | None = None) -> None:
        """Count one request let in here against each rate limit's current window."""
        now = now or datetime.now(UTC)
        held = self._keys.setdefault(key_id, _KeyLimits())
        for name in configured:
            end = window_end(name, now)
            if end is not None:
                held.admitted[(name, end)] = held.admitted.get((name, end), 0) + 1
        if len(held.admitted) > 3 * len(RATE_WINDOWS):  # drop the windows that are over
            held.admitted = {k: v for k, v in held.admitted.items() if k[1] > now}
