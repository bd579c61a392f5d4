"""The access key aggregate: its state, the rules of its lifecycle, and how events fold.

A method checks a rule and returns the `Change` (event) it implies; it never mutates.
`evolve` folds a recorded event into a new state; replaying a key's events gives its
state at any point, which is also how `?as_of=` answers.

    active <-> disabled;  active|disabled -> expired (at expires_at);  any -> revoked
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from contracts import (
    QUARANTINE_REASON,
    KeyAttributes,
    KeyCreatedData,
    KeyDisabledData,
    KeyEnabledData,
    KeyExpiredData,
    KeyGracePeriodEndedData,
    KeyPatch,
    KeyReportedLeakedData,
    KeyRevealedData,
    KeyRevokedData,
    KeyRotatedData,
    KeyStatus,
    KeyUpdatedData,
    TokenBudget,
)
from contracts.keys import dump_field_value
from services.keys.domain import errors, leaks
from services.keys.domain.recorded import Change, RecordedEvent


@dataclasses.dataclass(frozen=True, slots=True)
class AccessKey:
    key_id: UUID
    account_id: str
    name: str
    description: str | None
    environment: str
    scopes: tuple[str, ...]
    rate_limit_per_hour: int | None
    expires_at: datetime | None
    prefix: str
    status: KeyStatus
    created_at: datetime
    updated_at: datetime
    version: int
    secret_hash: bytes | None
    previous_secret_hash: bytes | None = None
    grace_period_ends_at: datetime | None = None
    disabled_reason: str | None = None
    canary: bool = False
    leak_report: leaks.LeakReport | None = None
    rate_limit_per_minute: int | None = None
    rate_limit_per_day: int | None = None
    token_budget: TokenBudget | None = None
    allowed_cidrs: tuple[str, ...] = ()
    """Canonical networks (contracts.limits); empty: anywhere."""
    rotated_at: datetime | None = None
    previous_prefix: str | None = None
    end_grace_when_quiet_seconds: int | None = None
    """Set while a rotation's grace may still end early (cleared when it has ended)."""

    @property
    def quarantined(self) -> bool:
        """Disabled because its secret was reported leaked (rotate and enable to resume)."""
        return self.status == "disabled" and self.disabled_reason == QUARANTINE_REASON

    # --- rules ----------------------------------------------------------------------
    def status_at(self, now: datetime) -> KeyStatus:
        """Refused at `expires_at` at once, even before the KeyExpired event is appended."""
        if (
            self.status in ("active", "disabled")
            and self.expires_at is not None
            and self.expires_at <= now
        ):
            return "expired"
        return self.status

    def _require_changeable(self, now: datetime) -> None:
        status = self.status_at(now)
        if status == "revoked":
            raise errors.KeyRevoked(f"key {self.key_id} is revoked; it cannot change any more")
        if status == "expired":
            raise errors.KeyExpired(f"key {self.key_id} has expired; it can only be revoked")

    def update(self, patch: KeyPatch, now: datetime) -> Change:
        self._require_changeable(now)
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for field in patch.model_fields_set:
            new = getattr(patch, field)
            old = getattr(self, field)
            if field in _LISTS:
                old, new = list(old), list(new)
            if new != old:
                before[field] = dump_field_value(field, old)
                after[field] = dump_field_value(field, new)
        if not after:
            raise errors.NothingToChange("the patch changes nothing")
        if "expires_at" in after and patch.expires_at is not None and patch.expires_at <= now:
            raise errors.ExpiryInPast("expires_at must be in the future")
        return Change("KeyUpdated", KeyUpdatedData(before=before, after=after))

    def disable(self, reason: str, now: datetime) -> Change:
        self._require_changeable(now)
        if self.status == "disabled":
            raise errors.KeyAlreadyDisabled(f"key {self.key_id} is already disabled")
        return Change("KeyDisabled", KeyDisabledData(reason=reason))

    def enable(self, reason: str | None, now: datetime) -> Change:
        self._require_changeable(now)
        if self.status == "active":
            raise errors.KeyAlreadyActive(f"key {self.key_id} is already active")
        return Change("KeyEnabled", KeyEnabledData(reason=reason))

    def rotate(
        self,
        prefix: str,
        secret_hash: bytes,
        grace_period_ends_at: datetime | None,
        now: datetime,
        end_grace_when_quiet_seconds: int | None = None,
    ) -> Change:
        self._require_changeable(now)
        if end_grace_when_quiet_seconds is not None and grace_period_ends_at is None:
            raise errors.GraceRequired(
                "end_grace_when_quiet_seconds ends a grace period early: give the rotation"
                " one (grace_period_seconds > 0)."
            )
        data = KeyRotatedData(
            prefix=prefix,
            previous_prefix=self.prefix,
            grace_period_ends_at=grace_period_ends_at,
            end_grace_when_quiet_seconds=end_grace_when_quiet_seconds,
        )
        return Change("KeyRotated", data, secret_hash=secret_hash)

    def in_grace(self, now: datetime) -> bool:
        """The secret a rotation replaced still verifies."""
        return (
            self.status_at(now) in ("active", "disabled")
            and self.grace_period_ends_at is not None
            and self.grace_period_ends_at > now
        )

    def quiet_until(self, last_used_at: datetime | None) -> datetime | None:
        """When the old secret will have been quiet long enough (counted from its last use
        after the rotation, or from the rotation when it was not used since); None when
        this grace period does not end early."""
        quiet = self.end_grace_when_quiet_seconds
        if quiet is None or self.rotated_at is None:
            return None
        since = self.rotated_at if last_used_at is None else max(last_used_at, self.rotated_at)
        return since + timedelta(seconds=quiet)

    def end_grace_if_quiet(self, last_used_at: datetime | None, now: datetime) -> Change | None:
        """KeyGracePeriodEnded once the old secret has been quiet for the rotation's
        end_grace_when_quiet_seconds; None while it is used, when the grace period is over
        already (ended early, ran out, key revoked or expired) or does not end early."""
        due, ends = self.quiet_until(last_used_at), self.grace_period_ends_at
        if due is None or due > now or ends is None or not self.in_grace(now):
            return None
        if last_used_at is not None and self.rotated_at and last_used_at < self.rotated_at:
            last_used_at = None  # a use of the secret before it was rotated out
        data = KeyGracePeriodEndedData(
            reason="old_secret_quiet",
            ended_at=now,
            last_used_at=last_used_at,
            quiet_seconds=self.end_grace_when_quiet_seconds or 1,
            previous_prefix=self.previous_prefix or self.prefix,
            grace_period_ends_at=ends,
        )
        return Change("KeyGracePeriodEnded", data)

    def reveal(self) -> Change:
        if self.status == "revoked":
            raise errors.KeyRevoked(f"key {self.key_id} is revoked; its secret is destroyed")
        return Change("KeyRevealed", KeyRevealedData())

    def revoke(self, reason: str | None) -> Change:
        if self.status == "revoked":
            raise errors.KeyRevoked(f"key {self.key_id} is already revoked")
        return Change("KeyRevoked", KeyRevokedData(reason=reason))

    def report_leaked(
        self, source: str, url: str | None, policy_action: leaks.PolicyAction, now: datetime
    ) -> list[Change]:
        """The report, then the disable or revoke it causes; nothing when an earlier report
        (or a revocation) already took the key out of use."""
        action = leaks.decide(
            status=self.status_at(now),
            quarantined=self.quarantined,
            canary=self.canary,
            policy_action=policy_action,
        )
        if action is None:
            return []
        report = KeyReportedLeakedData(source=source, url=url, action=action)
        changes = [Change("KeyReportedLeaked", report)]
        if action == "quarantined":
            changes.append(Change("KeyDisabled", KeyDisabledData(reason=QUARANTINE_REASON)))
        elif action == "revoked":
            changes.append(Change("KeyRevoked", KeyRevokedData(reason=QUARANTINE_REASON)))
        return changes

    def expire(self, now: datetime) -> Change | None:
        """The scheduler's change once `expires_at` has passed; None when not due."""
        if self.status_at(now) != "expired" or self.status == "expired" or self.expires_at is None:
            return None
        return Change("KeyExpired", KeyExpiredData(expires_at=self.expires_at))


def create_key(attributes: KeyAttributes, prefix: str, secret_hash: bytes, now: datetime) -> Change:
    if attributes.expires_at is not None and attributes.expires_at <= now:
        raise errors.ExpiryInPast("expires_at must be in the future")
    data = KeyCreatedData(**attributes.model_dump(), prefix=prefix)
    return Change("KeyCreated", data, secret_hash=secret_hash)


_LISTS = ("scopes", "allowed_cidrs")
"""Attributes kept as tuples (the aggregate is immutable), lists in contracts."""


# --- folding ----------------------------------------------------------------------------
def evolve(  # noqa: PLR0911 - one per type
    key: AccessKey | None, event: RecordedEvent
) -> AccessKey:
    """The state after `event`. Data is trusted: it was validated when it was decided."""
    data = event.data
    common: dict[str, Any] = {"version": event.stream_version, "updated_at": event.occurred_at}
    if event.event_type == "KeyCreated":
        created = KeyCreatedData.model_validate(data)
        return AccessKey(
            key_id=event.key_id,
            account_id=event.account_id,
            name=created.name,
            description=created.description,
            environment=created.environment,
            scopes=tuple(created.scopes),
            rate_limit_per_hour=created.rate_limit_per_hour,
            expires_at=created.expires_at,
            prefix=created.prefix,
            status="active",
            created_at=event.occurred_at,
            updated_at=event.occurred_at,
            version=event.stream_version,
            secret_hash=event.secret_hash,
            canary=created.canary,
            rate_limit_per_minute=created.rate_limit_per_minute,
            rate_limit_per_day=created.rate_limit_per_day,
            token_budget=created.token_budget,
            allowed_cidrs=tuple(created.allowed_cidrs),
        )
    if key is None:
        raise ValueError(f"{event.event_type} before KeyCreated in stream {event.key_id}")
    if event.event_type == "KeyUpdated":
        after = KeyUpdatedData.model_validate(data).after
        changes: dict[str, Any] = {f: (tuple(v) if f in _LISTS else v) for f, v in after.items()}
        return dataclasses.replace(key, **changes, **common)
    if event.event_type == "KeyDisabled":
        return dataclasses.replace(key, status="disabled", disabled_reason=data["reason"], **common)
    if event.event_type == "KeyEnabled":
        return dataclasses.replace(key, status="active", disabled_reason=None, **common)
    if event.event_type == "KeyRotated":
        rotated = KeyRotatedData.model_validate(data)
        return dataclasses.replace(
            key,
            prefix=rotated.prefix,
            secret_hash=event.secret_hash,
            previous_secret_hash=key.secret_hash if rotated.grace_period_ends_at else None,
            grace_period_ends_at=rotated.grace_period_ends_at,
            rotated_at=event.occurred_at,
            previous_prefix=rotated.previous_prefix,
            end_grace_when_quiet_seconds=rotated.end_grace_when_quiet_seconds,
            **common,
        )
    if event.event_type == "KeyGracePeriodEnded":
        ended = KeyGracePeriodEndedData.model_validate(data)
        return dataclasses.replace(
            key,
            previous_secret_hash=None,
            grace_period_ends_at=ended.ended_at,
            end_grace_when_quiet_seconds=None,
            **common,
        )
    if event.event_type == "KeyRevealed":
        return dataclasses.replace(key, version=event.stream_version)
    if event.event_type == "KeyRevoked":
        return dataclasses.replace(key, status="revoked", **common)
    if event.event_type == "KeyExpired":
        return dataclasses.replace(key, status="expired", **common)
    if event.event_type == "KeyReportedLeaked":
        reported = KeyReportedLeakedData.model_validate(data)
        report = leaks.LeakReport(reported.source, reported.url, event.occurred_at, reported.action)
        return dataclasses.replace(key, leak_report=report, **common)
    raise ValueError(f"unknown event type {event.event_type}")


def replay(events: Iterable[RecordedEvent]) -> AccessKey | None:
    key: AccessKey | None = None
    for event in events:
        key = evolve(key, event)
    return key
