"""What the audit API answers: records, pages of them, and verification reports.

Records are rendered once, by `record_document`, for every format: the JSON page, JSON
lines and (flattened) CSV carry the same values. The pydantic models describe the shapes
for the OpenAPI document.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import orjson
from pydantic import BaseModel, Field

from contracts import format_utc
from services.audit.domain.verification import Verdict

CSV_COLUMNS: Final = (
    "audit_id",
    "sequence",
    "occurred_at",
    "recorded_at",
    "account_id",
    "actor_type",
    "actor_id",
    "actor_ip",
    "actor_user_agent",
    "action",
    "key_id",
    "key_name",
    "outcome",
    "correlation_id",
    "causation_id",
    "details",
    "source_id",
    "hash",
    "prev_hash",
)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def record_document(row: Any) -> dict[str, Any]:
    """One record as the API shows it; `details` is the stored JSON, passed through as is."""
    actor = (
        None
        if row["actor_type"] is None
        else {
            "type": row["actor_type"],
            "id": row["actor_id"],
            "ip": row["actor_ip"],
            "user_agent": row["actor_user_agent"],
        }
    )
    return {
        "audit_id": str(row["audit_id"]),
        "sequence": row["seq"],
        "source_id": row["source_id"],
        "occurred_at": format_utc(row["occurred_at"]),
        "recorded_at": format_utc(row["recorded_at"]),
        "account_id": row["account_id"],
        "actor": actor,
        "action": row["action"],
        "target": {"key_id": _text(row["key_id"]), "key_name": row["key_name"]},
        "outcome": row["outcome"],
        "correlation_id": row["correlation_id"],
        "causation_id": row["causation_id"],
        "details": orjson.Fragment(row["details"]),
        "hash": row["hash"].hex(),
        "prev_hash": row["prev_hash"].hex(),
    }


class Actor(BaseModel):
    type: str = Field(description="user, service or system.")
    id: str
    ip: str | None = None
    user_agent: str | None = None


class Target(BaseModel):
    key_id: UUID | None = Field(description="The key concerned, if any.")
    key_name: str | None = Field(description="The key's name when it happened, if known.")


class AuditRecordView(BaseModel):
    audit_id: UUID
    sequence: int = Field(description="Position in the account's chain: 1, 2, 3... no gaps.")
    source_id: str = Field(description="event:<id>, result:<command id> or alert:<id>.")
    occurred_at: str = Field(description="When it happened (UTC).")
    recorded_at: str = Field(description="When the audit log recorded it (UTC).")
    account_id: str
    actor: Actor | None = Field(description="Who did it; null when the source did not say.")
    action: str = Field(description="key.created, key.updated, ..., command.rejected, ...")
    target: Target
    outcome: str = Field(description="success, or failure for a rejected command.")
    correlation_id: str | None
    causation_id: str | None
    details: dict[str, Any] = Field(description="before/after of an update, a reason...")
    hash: str = Field(description="HMAC-SHA-256 of the record's content, hex.")
    prev_hash: str = Field(description="hash of the record before it in the chain.")


class AuditPage(BaseModel):
    items: list[AuditRecordView]
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page.")


class BrokenRecord(BaseModel):
    sequence: int
    code: str = Field(description="altered, unlinked, missing, truncated, head_mismatch, ...")
    message: str
    audit_id: UUID | None = None
    source_id: str | None = None


class VerifyReport(BaseModel):
    account_id: str
    valid: bool
    records_checked: int
    first_sequence: int | None
    last_sequence: int
    last_hash: str = Field(description="Keep it: a later report must still contain it.")
    checkpoint: dict[str, Any] | None = Field(description="The newest signed checkpoint.")
    retention: dict[str, Any] | None = Field(description="Where retention last cut the chain.")
    first_broken: BrokenRecord | None
    verified_at: str

    @classmethod
    def of(cls, verdict: Verdict) -> VerifyReport:
        broken = verdict.broken
        checkpoint = verdict.checkpoint
        anchor = verdict.anchor
        return cls(
            account_id=verdict.account_id,
            valid=verdict.ok,
            records_checked=verdict.records_checked,
            first_sequence=verdict.first_seq,
            last_sequence=verdict.last_seq,
            last_hash=verdict.last_hash.hex(),
            checkpoint=None
            if checkpoint is None
            else {
                "sequence": checkpoint.seq,
                "hash": checkpoint.hash.hex(),
                "signed_at": format_utc(checkpoint.signed_at),
            },
            retention=None
            if anchor is None
            else {
                "removed_through_sequence": anchor.through_seq,
                "applied_at": format_utc(anchor.applied_at),
            },
            first_broken=None
            if broken is None
            else BrokenRecord(
                sequence=broken.seq,
                code=broken.code,
                message=broken.message,
                audit_id=broken.audit_id,
                source_id=broken.source_id,
            ),
            verified_at=format_utc(datetime.now(UTC)),
        )
