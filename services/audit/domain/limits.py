"""Changes of a key's limit state (from usage.limits) as audit entries: one per change.

`usage.limits` carries a key's state again and again (a clear key's counts move, a state is
sent again after a restart, the usage service replays): only a change is recorded. Each
change has a source id of its own that any repeat of it shares: a limited state by its
limit and the end of its window (a key is limited by one window once), a clear by the
limited state it ends. So a change already recorded is skipped by the log's unique source
id, whatever this process remembers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import orjson

from contracts import LimitState, format_utc
from services.audit.domain.entries import LIMIT_ACTIONS, SUCCESS, ActorRef, Entry

LIMIT_RATE_LIMITED, LIMIT_BUDGET_EXHAUSTED, LIMIT_CLEARED = LIMIT_ACTIONS
LIMITED_ACTIONS: Final = {
    "rate_limited": LIMIT_RATE_LIMITED,
    "budget_exhausted": LIMIT_BUDGET_EXHAUSTED,
}
LIMITING_SERVICE: Final = ActorRef(type="service", id="usage")


@dataclass(frozen=True, slots=True)
class Limited:
    """A limited state as the audit log knows it: which limit, until when."""

    state: str
    limit_name: str
    until: str

    def source_id(self, key_id: str) -> str:
        return f"limit:{key_id}:{self.limit_name}:{self.until}"


def changes(states: Iterable[LimitState], last: dict[str, Limited | None]) -> list[Entry]:
    """The entries of the states that change their key's state, in order. `last` holds
    each key's state before them (None: clear), for the keys known; it is updated."""
    entries: list[Entry] = []
    for message in states:
        key_id = str(message.key_id)
        before = last.get(key_id)
        if message.state == "clear":
            last[key_id] = None
            if before is not None:
                previous = {
                    "state": before.state,
                    "limit_name": before.limit_name,
                    "until": before.until,
                }
                source_id = f"{before.source_id(key_id)}:cleared"
                entries.append(_entry(message, LIMIT_CLEARED, source_id, {"previous": previous}))
            continue
        if message.limit_name is None or message.until is None:
            continue  # the contract refuses it already
        now = Limited(message.state, message.limit_name, format_utc(message.until))
        last[key_id] = now
        if now != before:
            entries.append(
                _entry(message, LIMITED_ACTIONS[message.state], now.source_id(key_id), {})
            )
    return entries


def _entry(message: LimitState, action: str, source_id: str, extra: dict[str, object]) -> Entry:
    details = message.model_dump(
        mode="json", include={"state", "limit_name", "until", "counted", "limit", "as_of"}
    )
    return Entry(
        source_id=source_id,
        account_id=message.account_id,
        occurred_at=message.as_of,
        actor=LIMITING_SERVICE,
        action=action,
        key_id=message.key_id,
        outcome=SUCCESS,
        correlation_id=None,
        causation_id=None,
        details=orjson.dumps({**details, **extra}).decode(),
    )


def from_details(action: str, details: str) -> Limited | None:
    """The state a stored limit record left its key in (for a process that starts)."""
    if action == LIMIT_CLEARED:
        return None
    data = orjson.loads(details)
    return Limited(data["state"], data["limit_name"], data["until"])
