"""Request and response bodies of the HTTP API (the OpenAPI document is built from them)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import Actor, KeyStatus, Reason, TokenBudget
from contracts.base import NOT_A_BOOL, Text, UtcDatetime, Whole
from contracts.commands import MAX_GRACE_PERIOD_SECONDS
from contracts.limits import LimitName
from contracts.usage import SecretMatched
from services.keys.app.verification import Code
from services.keys.domain.key import AccessKey
from services.keys.domain.recorded import RecordedEvent


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyView(BaseModel):
    id: uuid.UUID
    account_id: str
    name: str
    description: str | None
    environment: str
    scopes: list[str]
    rate_limit_per_hour: int | None
    rate_limit_per_minute: int | None
    rate_limit_per_day: int | None
    token_budget: TokenBudget | None
    allowed_cidrs: list[str] = Field(description="Networks the key may be used from; [] anywhere.")
    expires_at: UtcDatetime | None
    prefix: str = Field(description="Display start of the secret, e.g. ig_live_Ab3d.")
    status: KeyStatus
    disabled_reason: str | None
    grace_period_ends_at: UtcDatetime | None = Field(
        description="Until when the secret before the last rotation is still accepted."
    )
    end_grace_when_quiet_seconds: int | None = Field(
        None,
        description="While set, the grace period ends early once the previous secret has not"
        " been presented for this long (KeyGracePeriodEnded).",
    )
    created_at: UtcDatetime
    updated_at: UtcDatetime
    last_used_at: UtcDatetime | None
    version: int = Field(description="Stream version; send it back in If-Match to update safely.")
    canary: bool = Field(False, description="A decoy: never valid, every use alerts.")
    leak_report: LeakReportView | None = Field(
        None, description="The latest report of this key's secret as leaked, if any."
    )

    @classmethod
    def of(
        cls, key: AccessKey, last_used_at: datetime | None = None, at: datetime | None = None
    ) -> KeyView:
        """The key as seen at `at` (now by default): its status is the status then."""
        return cls(
            id=key.key_id,
            account_id=key.account_id,
            name=key.name,
            description=key.description,
            environment=key.environment,
            scopes=list(key.scopes),
            rate_limit_per_hour=key.rate_limit_per_hour,
            rate_limit_per_minute=key.rate_limit_per_minute,
            rate_limit_per_day=key.rate_limit_per_day,
            token_budget=key.token_budget,
            allowed_cidrs=list(key.allowed_cidrs),
            expires_at=key.expires_at,
            prefix=key.prefix,
            status=key.status_at(at or datetime.now(UTC)),
            disabled_reason=key.disabled_reason,
            grace_period_ends_at=key.grace_period_ends_at,
            end_grace_when_quiet_seconds=key.end_grace_when_quiet_seconds,
            created_at=key.created_at,
            updated_at=key.updated_at,
            last_used_at=last_used_at,
            version=key.version,
            canary=key.canary,
            leak_report=LeakReportView(**dataclasses.asdict(key.leak_report))
            if key.leak_report
            else None,
        )


class KeyWithSecret(KeyView):
    key: str = Field(description="The secret. Shown here and by reveal only; copy it now.")


class RevealedSecret(BaseModel):
    id: uuid.UUID
    key: str
    prefix: str


class KeyList(BaseModel):
    items: list[KeyView]
    next_cursor: str | None


class DisableBody(Body):
    reason: Reason = "Disabled through the API"


class ReasonBody(Body):
    reason: Reason | None = None


QuietSeconds = Annotated[int, Field(ge=1, le=MAX_GRACE_PERIOD_SECONDS), NOT_A_BOOL]


class RotateBody(Body):
    grace_period_seconds: Whole = Field(
        0,
        ge=0,
        le=MAX_GRACE_PERIOD_SECONDS,
        description="How long the previous secret keeps working (0: refused at once).",
    )
    end_grace_when_quiet_seconds: QuietSeconds | None = Field(
        None,
        description="End the grace period early, once no verification has matched the"
        " previous secret for this many seconds (on any verifier); never later than the"
        " grace period's end. Needs grace_period_seconds > 0 (else 422"
        " grace_period_required).",
    )

    @property
    def asks(self) -> str:
        """The request's canonical form, for its Idempotency-Key."""
        quiet = self.end_grace_when_quiet_seconds
        return str(self.grace_period_seconds) + ("" if quiet is None else f" quiet {quiet}")


class EventView(BaseModel):
    event_id: uuid.UUID
    event_type: str
    key_id: uuid.UUID
    account_id: str
    stream_version: int
    position: int | None = Field(description="Global order; null for a few ms after commit.")
    occurred_at: UtcDatetime
    actor: Actor
    correlation_id: str | None
    causation_id: str | None
    data: dict[str, Any]

    @classmethod
    def of(cls, event: RecordedEvent) -> EventView:
        return cls(
            event_id=event.event_id,
            event_type=event.event_type,
            key_id=event.key_id,
            account_id=event.account_id,
            stream_version=event.stream_version,
            position=event.position,
            occurred_at=event.occurred_at,
            actor=event.actor,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id,
            data=event.data,
        )


class EventList(BaseModel):
    items: list[EventView]
    next_cursor: str | None


class WhoAmI(BaseModel):
    key_id: uuid.UUID
    account_id: str
    environment: str
    scopes: list[str]


class VerifyRequest(Body):
    key: str = Field(max_length=512, description="The secret the client presented.")
    source_ip: str | None = Field(
        None,
        max_length=64,
        description="The client's address. A key with allowed_cidrs is refused "
        "(ip_not_allowed) without one, or with one outside its networks.",
    )
    user_agent: str | None = Field(None, max_length=500)
    endpoint: str | None = Field(None, max_length=200, description="What the client called.")
    model: Text | None = Field(None, max_length=100, description="The model the client asked for.")


class LimitView(BaseModel):
    limit: int = Field(ge=1, description="What the window allows (requests or tokens).")
    remaining: int = Field(ge=0, description="What is left of it after this request.")
    reset_at: UtcDatetime = Field(description="When the window ends (UTC).")


VerifyCode = Code
"""The codes of a verification's answer: those verification decides (one list)."""


class VerifyResponse(BaseModel):
    """The answer; the order of the checks and what each code means: docs/limits.md."""

    valid: bool
    code: VerifyCode
    key_id: uuid.UUID | None = None
    account_id: str | None = None
    environment: str | None = None
    scopes: list[str] | None = None
    rate_limit_per_hour: int | None = None
    allowed_cidrs: list[str] | None = Field(
        None,
        description="For a known key: the networks it may be used from ([] = anywhere), so"
        " a gateway that caches the answer can check its clients' addresses itself.",
    )
    limits: dict[LimitName, LimitView] | None = Field(
        None, description="With valid: each limit the key has, and what remains of it."
    )
    limit_name: LimitName | None = Field(
        None, description="With rate_limited or budget_exhausted: the limit reached."
    )
    retry_after_seconds: int | None = Field(
        None, ge=1, description="With rate_limited or budget_exhausted: when to ask again."
    )
    reset_at: UtcDatetime | None = Field(
        None, description="With rate_limited or budget_exhausted: when that window ends."
    )
    secret: SecretMatched | None = Field(
        None,
        description="For a known key: which of its secrets was presented (previous: the one"
        " a rotation replaced, in its grace period). A gateway puts previous on its usage"
        " record (secret), so a rotation's grace can end once the old secret is quiet.",
    )
    valid_until: UtcDatetime | None = Field(
        None,
        description="With secret previous: when its grace period ends (a cached answer must"
        " not outlive it).",
    )


# --- leaked keys (docs/secret-scanning.md) ---------------------------------------------
class LeakReportView(BaseModel):
    source: str = Field(description="Who reported the secret: github, public, a scanner.")
    url: str | None = Field(description="Where it was found, as the reporter said.")
    reported_at: UtcDatetime
    action: Literal["quarantined", "revoked", "none"] = Field(
        description="What the report did to the key."
    )


class GitHubSecretMatch(BaseModel):
    """One match in GitHub's secret-scanning partner format; fields GitHub may add later
    are ignored."""

    model_config = ConfigDict(extra="ignore")

    token: str = Field(max_length=256, description="The string GitHub found.")
    type: str = Field(max_length=100, description="The partner pattern's name.")
    url: str | None = Field(None, max_length=1000, description="Where GitHub found it.")
    source: str | None = Field(None, max_length=100, description="content, commit, issue...")


class GitHubTokenFeedback(BaseModel):
    token_hash: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the token GitHub sent."
    )
    token_type: str
    label: Literal["true_positive", "false_positive"]


MAX_PUBLIC_CANDIDATES = 1000


class CredentialsRevokeRequest(Body):
    credentials: list[Annotated[str, Field(max_length=56)]] = Field(
        max_length=MAX_PUBLIC_CANDIDATES,
        description="Strings you found that may be InstaGen access keys (up to 1,000).",
    )


class CredentialsRevokeAnswer(BaseModel):
    message: str = Field(description="Always the same, whatever the candidates were.")
