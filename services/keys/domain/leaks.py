"""What a leak report does to a key: the per-environment policy and its decision.

Default: a production key is quarantined (disabled with reason ``reported_leaked``, so a
person can rotate and enable it without breaking every client at once), a key of any
other environment is revoked at once. A key already out of use by an earlier report (or
revoked) is left alone: the report changes nothing more and appends nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from contracts import PRODUCTION
from contracts.keys import LeakAction

PolicyAction = Literal["quarantine", "revoke"]
_ACTIONS: Final = ("quarantine", "revoke")
OTHERWISE: Final = "*"


@dataclass(frozen=True)
class LeakPolicy:
    """The action per environment; `otherwise` for every environment not named."""

    by_environment: Mapping[str, PolicyAction] = field(
        default_factory=lambda: {PRODUCTION: "quarantine"}
    )
    otherwise: PolicyAction = "revoke"

    def action_for(self, environment: str) -> PolicyAction:
        return self.by_environment.get(environment, self.otherwise)

    @classmethod
    def parse(cls, text: str) -> LeakPolicy:
        """``production=quarantine,*=revoke`` (the setting KEYS_LEAK_POLICY)."""
        by_environment: dict[str, PolicyAction] = {}
        otherwise: PolicyAction = "revoke"
        for part in filter(None, (p.strip() for p in text.split(","))):
            environment, _, action = (s.strip() for s in part.partition("="))
            if action not in _ACTIONS or not environment:
                raise ValueError(
                    f"leak policy entry {part!r}: write <environment>=quarantine|revoke,"
                    " and *=... for every other environment"
                )
            chosen: PolicyAction = "quarantine" if action == "quarantine" else "revoke"
            if environment == OTHERWISE:
                otherwise = chosen
            else:
                by_environment[environment] = chosen
        return cls(by_environment, otherwise)


DEFAULT_LEAK_POLICY: Final = LeakPolicy()


@dataclass(frozen=True, slots=True)
class LeakReport:
    """The latest report of a key, as the console shows it."""

    source: str
    url: str | None
    reported_at: datetime
    action: LeakAction


def decide(
    *, status: str, quarantined: bool, canary: bool, policy_action: PolicyAction
) -> LeakAction | None:
    """The action a report takes on a key in `status` (as of now); None: no event at all
    (revoked already, or quarantined by an earlier report: nothing more to do)."""
    if status == "revoked" or quarantined:
        return None
    if canary:
        return "none"  # never valid anyway; the report is still worth an alert
    if policy_action == "revoke":
        return "revoked"
    return "quarantined" if status == "active" else "none"
