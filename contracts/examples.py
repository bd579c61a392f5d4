"""One valid instance of every message type, for tests, documentation and smoke checks.

Ids are fresh on every call, so publishing the examples again never collides with the
idempotency records of an earlier run; times are fixed so that output reads the same.
The events form one replayable stream of a single key, in a plausible order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from contracts.alerts import Alert, AlertWindow
from contracts.base import Actor, ContractModel
from contracts.commands import (
    Command,
    CreateKey,
    DisableKey,
    DisableKeyData,
    EnableKey,
    EnableKeyData,
    ReportLeakedKey,
    ReportLeakedKeyData,
    RevokeKey,
    RevokeKeyData,
    RotateKey,
    RotateKeyData,
    UpdateKey,
)
from contracts.event_data import (
    KeyCreatedData,
    KeyDisabledData,
    KeyEnabledData,
    KeyExpiredData,
    KeyGracePeriodEndedData,
    KeyReportedLeakedData,
    KeyRevealedData,
    KeyRevokedData,
    KeyRotatedData,
    KeyUpdatedData,
)
from contracts.events import (
    Event,
    KeyCreated,
    KeyDisabled,
    KeyEnabled,
    KeyExpired,
    KeyGracePeriodEnded,
    KeyReportedLeaked,
    KeyRevealed,
    KeyRevoked,
    KeyRotated,
    KeyUpdated,
)
from contracts.keys import (
    QUARANTINE_REASON,
    SCOPE_KEYS_VERIFY,
    SCOPE_USAGE_READ,
    KeyAttributes,
    KeyPatch,
)
from contracts.limits import LimitState, LimitWindow, TokenBudget
from contracts.results import CommandResult
from contracts.usage import UsageRecord

BASE_TIME = datetime(2026, 11, 26, 18, 0, 0, 123456, tzinfo=UTC)
ADMIN = Actor(type="user", id="alice@example.com", ip="203.0.113.7", user_agent="curl/8.5")
BILLING = Actor(type="service", id="billing")
EXPIRES_AT = BASE_TIME + timedelta(days=90)


def example_events(
    *, key_id: UUID | None = None, account_id: str = "demo", first_position: int = 1
) -> list[Event]:
    """A key's whole life, one event of each type: created ... reported leaked (and so
    disabled) ... rotated, its old secret's grace ended once quiet ... expired, revoked."""
    key_id = key_id or uuid4()
    payloads: list[tuple[type[Event], ContractModel]] = [
        (
            KeyCreated,
            KeyCreatedData(
                name="CI pipeline",
                description="Used by nightly builds",
                environment="staging",
                scopes=[SCOPE_KEYS_VERIFY],
                rate_limit_per_hour=1000,
                expires_at=None,
                rate_limit_per_minute=60,
                token_budget=TokenBudget(tokens=2_000_000, period="month"),
                allowed_cidrs=["203.0.113.0/24", "2001:db8::/32"],
                prefix="ig_test_Ab3d",
            ),
        ),
        (
            KeyUpdated,
            KeyUpdatedData(
                before={
                    "scopes": [SCOPE_KEYS_VERIFY],
                    "expires_at": None,
                    "token_budget": TokenBudget(tokens=2_000_000, period="month"),
                },
                after={
                    "scopes": [SCOPE_KEYS_VERIFY, SCOPE_USAGE_READ],
                    "expires_at": EXPIRES_AT,
                    "token_budget": TokenBudget(tokens=5_000_000, period="month"),
                },
            ),
        ),
        (
            KeyReportedLeaked,
            KeyReportedLeakedData(
                source="github",
                url="https://github.com/octo/demo/blob/abc123/.env",
                action="quarantined",
            ),
        ),
        (KeyDisabled, KeyDisabledData(reason=QUARANTINE_REASON)),
        (KeyEnabled, KeyEnabledData(reason="the leaked secret was rotated out")),
        (
            KeyRotated,
            KeyRotatedData(
                prefix="ig_test_Zx9q",
                previous_prefix="ig_test_Ab3d",
                grace_period_ends_at=BASE_TIME + timedelta(hours=1),
                end_grace_when_quiet_seconds=30,
            ),
        ),
        (
            KeyGracePeriodEnded,
            KeyGracePeriodEndedData(
                reason="old_secret_quiet",
                ended_at=BASE_TIME + timedelta(minutes=7),
                last_used_at=BASE_TIME + timedelta(minutes=6, seconds=20),
                quiet_seconds=30,
                previous_prefix="ig_test_Ab3d",
                grace_period_ends_at=BASE_TIME + timedelta(hours=1),
            ),
        ),
        (KeyRevealed, KeyRevealedData()),
        (KeyExpired, KeyExpiredData(expires_at=EXPIRES_AT)),
        (KeyRevoked, KeyRevokedData(reason="project finished")),
    ]
    return [
        event_type(
            event_id=uuid4(),
            key_id=key_id,
            account_id=account_id,
            stream_version=version,
            position=first_position + version - 1,
            occurred_at=BASE_TIME + timedelta(minutes=version),
            actor=ADMIN,
            correlation_id=f"req-{version}",
            causation_id=str(uuid4()),
            data=data,
        )
        for version, (event_type, data) in enumerate(payloads, start=1)
    ]


def example_commands(*, key_id: UUID | None = None, account_id: str = "demo") -> list[Command]:
    """One command of each type; all but CreateKey address ``key_id``."""
    key_id = key_id or uuid4()
    common: dict[str, Any] = {"account_id": account_id, "actor": BILLING, "issued_at": BASE_TIME}
    return [
        CreateKey(command_id=uuid4(), data=KeyAttributes(name="billing export"), **common),
        UpdateKey(
            command_id=uuid4(), key_id=key_id, data=KeyPatch(rate_limit_per_hour=None), **common
        ),
        DisableKey(
            command_id=uuid4(), key_id=key_id, data=DisableKeyData(reason="unpaid"), **common
        ),
        EnableKey(command_id=uuid4(), key_id=key_id, data=EnableKeyData(), **common),
        RotateKey(
            command_id=uuid4(),
            key_id=key_id,
            data=RotateKeyData(grace_period_seconds=3600, end_grace_when_quiet_seconds=300),
            **common,
        ),
        ReportLeakedKey(
            command_id=uuid4(),
            key_id=key_id,
            data=ReportLeakedKeyData(source="secret-scanner", url="https://paste.example/x1"),
            **common,
        ),
        RevokeKey(command_id=uuid4(), key_id=key_id, data=RevokeKeyData(reason=None), **common),
    ]


def example_results() -> list[CommandResult]:
    """An accepted CreateKey (with the new prefix) and a rejected command."""
    return [
        CommandResult(
            command_id=uuid4(),
            status="accepted",
            key_id=uuid4(),
            event_ids=[uuid4()],
            prefix="ig_live_Ab3d",
        ),
        CommandResult.rejected(uuid4(), "not_found", "no such key", key_id=uuid4()),
    ]


def example_usage_record(*, key_id: UUID | None = None, account_id: str = "demo") -> UsageRecord:
    return UsageRecord(
        record_id=uuid4(),
        key_id=key_id or uuid4(),
        account_id=account_id,
        occurred_at=BASE_TIME,
        source_ip="203.0.113.7",
        user_agent="instagen-python/1.4",
        endpoint="/v1/generate",
        model="instagen-xl",
        status_code=200,
        tokens_in=120,
        tokens_out=800,
        latency_ms=412.5,
    )


def example_alert(*, key_id: UUID | None = None, account_id: str = "demo") -> Alert:
    return Alert(
        alert_id=uuid4(),
        key_id=key_id or uuid4(),
        account_id=account_id,
        kind="volume_spike",
        severity="warning",
        detected_at=BASE_TIME,
        window=AlertWindow(from_=BASE_TIME - timedelta(hours=1), to=BASE_TIME),
        observed=5400,
        expected=310,
        evidence={"baseline_hours": 168, "p99": 402.0},
        summary="Requests are 17x the usual hourly volume; check the key is not leaked.",
    )


def example_limit_state(*, key_id: UUID | None = None, account_id: str = "demo") -> LimitState:
    """A key that used up its hourly requests: limited until the hour ends."""
    return LimitState(
        key_id=key_id or uuid4(),
        account_id=account_id,
        state="rate_limited",
        limit_name="rate_limit_per_hour",
        until=BASE_TIME.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1),
        counted=1000,
        limit=1000,
        as_of=BASE_TIME,
        windows={
            "rate_limit_per_hour": LimitWindow(
                counted=1000,
                limit=1000,
                reset_at=BASE_TIME.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1),
            )
        },
    )


def all_examples(*, account_id: str = "demo") -> list[ContractModel]:
    """Every example above: each event, command, result, a usage record and an alert."""
    key_id = uuid4()
    return [
        *example_events(key_id=key_id, account_id=account_id),
        *example_commands(key_id=key_id, account_id=account_id),
        *example_results(),
        example_usage_record(key_id=key_id, account_id=account_id),
        example_alert(key_id=key_id, account_id=account_id),
        example_limit_state(key_id=key_id, account_id=account_id),
    ]
