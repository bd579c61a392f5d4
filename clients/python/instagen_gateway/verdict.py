"""What the verifier answers for one presented key, and how a gateway answers its client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

STATUS_OF_CODE: Final[dict[str, int]] = {
    "valid": 200,
    "malformed": 401,
    "not_found": 401,
    "disabled": 401,
    "revoked": 401,
    "expired": 401,
    "ip_not_allowed": 403,
    "rate_limited": 429,
    "budget_exhausted": 429,
    "unavailable": 503,
}
"""The HTTP status a gateway answers for each code (INTERFACE.md, "Forward auth")."""

MESSAGES: Final[dict[str, str]] = {
    "malformed": "The access key is not a well-formed InstaGen key.",
    "not_found": "The access key is not known.",
    "disabled": "The access key is disabled.",
    "revoked": "The access key is revoked.",
    "expired": "The access key has expired.",
    "ip_not_allowed": "The access key may not be used from this network.",
    "rate_limited": "The access key's rate limit is reached; retry after the window ends.",
    "budget_exhausted": "The access key's token budget is spent; retry after it renews.",
    "unavailable": "Access keys cannot be verified right now; try again shortly.",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision about one request's key. ``valid`` is the only thing a gateway must read."""

    code: str
    key_id: str | None = None
    account_id: str | None = None
    environment: str | None = None
    scopes: tuple[str, ...] = ()
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each limit of an allowed key: ``{"limit", "remaining", "reset_at"}``."""
    retry_after_seconds: int | None = None
    reset_at: str | None = None
    secret: str | None = None
    """Which of the key's secrets was presented: current, or previous (the one a rotation
    replaced, while its grace period lasts); report it with the request's usage."""

    @property
    def valid(self) -> bool:
        return self.code == "valid"

    @property
    def status(self) -> int:
        """The HTTP status a gateway answers with: 200, 401, 403, 429 or 503."""
        return STATUS_OF_CODE.get(self.code, 401)

    def error_body(self) -> dict[str, Any]:
        """The platform's JSON error body for a refusal."""
        body: dict[str, Any] = {
            "error": {"code": self.code, "message": MESSAGES.get(self.code, "Refused.")}
        }
        if self.retry_after_seconds is not None:
            body["error"]["details"] = {
                "retry_after_seconds": self.retry_after_seconds,
                "reset_at": self.reset_at,
            }
        return body
