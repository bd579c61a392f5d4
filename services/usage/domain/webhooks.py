"""Webhooks as pure rules: the signature a receiver checks, when a failed delivery is
tried again, and which alerts a webhook wants. No I/O here (see docs/webhooks.md)."""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import urlsplit

from contracts import Alert, AlertWindow

SIGNATURE_HEADER: Final = "InstaGen-Signature"
DELIVERY_ID_HEADER: Final = "InstaGen-Delivery-Id"
WEBHOOK_ID_HEADER: Final = "InstaGen-Webhook-Id"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a prefix, not a secret
SEVERITY_RANK: Final = {"info": 0, "warning": 1, "critical": 2}


def new_secret() -> str:
    """A signing secret: 256 random bits, shown once to the account."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `InstaGen-Signature` value: `t=<unix seconds>,v1=<hex HMAC-SHA-256 of "t.body">`,
    keyed by the whole secret (its `whsec_` prefix included) as UTF-8."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (a random wait up to the capped exponential):
    many receivers failing together do not come back in step."""

    base_seconds: float = 5.0
    cap_seconds: float = 3600.0

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """The wait before the next try, after `attempts` failed tries (1 or more)."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** min(max(attempts - 1, 0), 60))
        return (rng or _RNG).uniform(0, ceiling)


_RNG: Final = random.SystemRandom()


def wants(kinds: list[str], min_severity: str, alert: Alert) -> bool:
    """Whether a webhook of these settings is sent the alert (the SQL of the intake says
    the same; this is its reference, for the tests)."""
    return (not kinds or alert.kind in kinds) and SEVERITY_RANK[alert.severity] >= SEVERITY_RANK[
        min_severity
    ]


def disabled_alert(
    webhook_id: uuid.UUID, account_id: str, url: str, failing_since: datetime, now: datetime
) -> Alert:
    """The alert that tells the account a webhook was disabled after failing too long.
    Its id follows from the webhook and the failure, so a retried disabling is one alert.
    It names the URL's origin only: a path or query may hold the receiver's own token,
    and alerts travel on a topic and into the audit log."""
    hours = (now - failing_since).total_seconds() / 3600
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    return Alert(
        alert_id=uuid.uuid5(webhook_id, f"webhook_disabled:{failing_since.isoformat()}"),
        key_id=webhook_id,
        account_id=account_id,
        kind="webhook_disabled",
        severity="warning",
        detected_at=now,
        window=AlertWindow(from_=failing_since, to=now),
        observed=round(hours, 2),
        expected=0,
        evidence={"webhook_id": str(webhook_id), "origin": origin},
        summary=(
            f"Webhook {webhook_id} ({origin[:200]}) failed every delivery for {hours:.1f} h and"
            " was disabled; fix the receiver, then create the webhook again."
        ),
    )
