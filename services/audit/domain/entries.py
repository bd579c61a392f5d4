"""What one source message says happened, before it takes its place in a chain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple
from uuid import UUID

SUCCESS: Final = "success"
FAILURE: Final = "failure"

COMMAND_REJECTED: Final = "command.rejected"
ALERT_RAISED: Final = "alert.raised"
RETENTION_APPLIED: Final = "retention.applied"
EVENT_ACTIONS: Final = {
    "KeyCreated": "key.created",
    "KeyUpdated": "key.updated",
    "KeyDisabled": "key.disabled",
    "KeyEnabled": "key.enabled",
    "KeyRotated": "key.rotated",
    "KeyRevealed": "key.revealed",
    "KeyRevoked": "key.revoked",
    "KeyExpired": "key.expired",
    "KeyReportedLeaked": "key.reported_leaked",
    "KeyGracePeriodEnded": "key.grace_period_ended",
}
LIMIT_ACTIONS: Final = ("limit.rate_limited", "limit.budget_exhausted", "limit.cleared")
"""Changes of a key's limit state (domain/limits.py)."""
ACTIONS: Final = (
    *EVENT_ACTIONS.values(),
    COMMAND_REJECTED,
    ALERT_RAISED,
    RETENTION_APPLIED,
    *LIMIT_ACTIONS,
)
KEY_EVENT_ACTIONS: Final = frozenset(EVENT_ACTIONS.values())
"""Records of the key's own events: read from its partition of keys.events in order, so the
key's name is known when they are written. A rejection or an alert comes from another topic,
with no order against keys.events: its name is resolved when it is read (adapters/queries)."""

UNATTRIBUTED: Final = "_unattributed"
"""The chain of records whose account could not be read (a command too broken to parse).
No account id can take this name: account ids start with a letter or digit."""


@dataclass(frozen=True, slots=True)
class ActorRef:
    """Who did it: a person, another service, or the platform itself."""

    type: str
    id: str
    ip: str | None = None
    user_agent: str | None = None


class Entry(NamedTuple):
    """One per message read (a named tuple: cheap to make, by the thousand per batch)."""

    source_id: str
    """Unique per source message: a redelivered message is recognised by it."""
    account_id: str
    occurred_at: datetime
    actor: ActorRef | None
    action: str
    key_id: UUID | None
    outcome: str
    correlation_id: str | None
    causation_id: str | None
    details: str
    """JSON text, kept and hashed exactly as written."""
    key_name: str | None = None
    """The key's name as of this entry, when the message itself says it (created, renamed)."""
    key_version: int | None = None
    """The key's stream version of `key_name`: a late redelivery never renames back."""
