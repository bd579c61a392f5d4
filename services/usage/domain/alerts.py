"""A finding as the Alert of INTERFACE.md: a deterministic id and a sentence to act on.

The id is a uuid5 of (key, kind, severity, cooldown bucket): the same condition found
again, by a redelivery or a replay of the topic, is the same alert, never a second one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from contracts import Alert, AlertWindow
from services.usage.domain.detectors import Finding

_ALERT_NAMESPACE = uuid.UUID("0f5b8c1e-7a43-4d2b-8e61-3c9d2f4a6b70")


def alert_id(key_id: str, kind: str, severity: str, bucket: float, scope: str = "") -> uuid.UUID:
    name = f"{key_id}/{kind}/{severity}/{int(bucket)}"
    return uuid.uuid5(_ALERT_NAMESPACE, f"{name}/{scope}" if scope else name)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _spike(f: Finding, key: str) -> str:
    return (
        f"{key} made at least {f.observed} requests in the minute from {_when(f.window_from)},"
        f" against about {f.expected} usually (threshold {f.evidence.get('threshold')}): check"
        " whether its secret leaked and disable the key if this traffic is not yours."
    )


def _rate(f: Finding, key: str) -> str:
    return (
        f"{key} made more than its declared {f.expected} requests in the hour to"
        f" {_when(f.window_to)}: raise its rate_limit_per_hour if this is expected growth,"
        " otherwise find the client that floods it."
    )


def _network(f: Finding, key: str) -> str:
    return (
        f"{key} was used from {f.evidence.get('network')}, a network it never used before:"
        " confirm with its owner that this is them, or disable the key."
    )


def _auth(f: Finding, key: str) -> str:
    return (
        f"{key} was refused at least {f.observed} times (401/403) in the minute from"
        f" {_when(f.window_from)}: a client is using a wrong or rotated-out secret, or"
        " someone is guessing; check the clients that hold this key."
    )


def _disabled(f: Finding, key: str) -> str:
    status = f.evidence.get("key_status", "no longer active")
    return (
        f"{key} is {status} but was still used at {_when(f.window_from)} from"
        f" {f.evidence.get('network') or 'somewhere'}: its secret is still out there; find who"
        " holds it,"
        " and revoke the key if it should never be used again."
    )


def _dormant(f: Finding, key: str) -> str:
    return (
        f"{key} was used again after {f.observed} idle days: confirm the owner expected"
        " this use, and disable the key if nobody did."
    )


def _unused(f: Finding, key: str) -> str:
    return (
        f"{key} is active but has not been used for {f.observed} days:"
        " disable it (it can be enabled again) to shrink what a leak could do."
    )


def _leak(f: Finding, key: str) -> str:
    action = f.evidence.get("action")
    done = {
        "quarantined": "it is disabled until you rotate and enable it",
        "revoked": "it was revoked; create a new key for its clients",
    }.get(str(action), "nothing more was changed")
    return (
        f"{key} was reported leaked by {f.evidence.get('source')}"
        f" ({f.evidence.get('url') or 'no location given'}): {done}; find where the secret"
        " was exposed and remove it."
    )


def _canary(f: Finding, key: str) -> str:
    return (
        f"Canary {key} was tried from {f.evidence.get('network')}"
        f" ({f.evidence.get('user_agent') or 'no user agent'}, {f.evidence.get('endpoint')}):"
        " whoever holds it got it from where it was planted; treat that place as breached."
    )


def _expiring(f: Finding, key: str) -> str:
    return (
        f"{key} expires at {f.evidence.get('expires_at')} (in {f.observed} days): give its"
        " clients a new key, or move its expires_at if it should keep working."
    )


def _grace(f: Finding, key: str) -> str:
    return (
        f"The old secret of {key} stops working at {f.evidence.get('grace_period_ends_at')}"
        f" but was still used at {f.evidence.get('previous_secret_last_used_at')}: move the"
        " clients that still send it to the new secret now."
    )


SUMMARIES: dict[str, Callable[[Finding, str], str]] = {
    "volume_spike": _spike,
    "rate_limit_exceeded": _rate,
    "new_source_network": _network,
    "auth_failure_burst": _auth,
    "disabled_key_in_use": _disabled,
    "dormant_key_reactivated": _dormant,
    "unused_key": _unused,
    "key_reported_leaked": _leak,
    "canary_key_used": _canary,
    "key_expiring": _expiring,
    "grace_period_ending": _grace,
}


def to_alert(f: Finding, key_name: str | None, detected_at: datetime) -> Alert:
    label = f"Key {key_name!r} ({f.key_id})" if key_name else f"Key {f.key_id}"
    summary = SUMMARIES[f.kind](f, label)
    if len(summary) > 500:
        summary = summary[:499] + "…"
    return Alert(
        alert_id=alert_id(f.key_id, f.kind, f.severity, f.bucket, f.scope),
        key_id=uuid.UUID(f.key_id),
        account_id=f.account_id,
        kind=f.kind,
        severity=f.severity,
        detected_at=detected_at,
        window=AlertWindow(
            from_=datetime.fromtimestamp(f.window_from, UTC),
            to=datetime.fromtimestamp(max(f.window_to, f.window_from), UTC),
        ),
        observed=f.observed,
        expected=f.expected,
        evidence=dict(f.evidence),
        summary=summary,
    )
