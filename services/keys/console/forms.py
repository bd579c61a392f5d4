"""Posted forms as the console reads them: checked for their origin first, then each field
parsed into what a use case takes, or refused with the field named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from pydantic import ValidationError

from contracts import PRODUCTION, KeyAttributes
from servicekit.errors import ApiError
from services.keys.app import use_cases
from services.keys.console import naming
from services.keys.console.context import BASE, KEYS_PAGE
from services.keys.console.sessions import ConsoleSecrets

GRACE_CHOICES = (("0", "None: refuse the old secret at once"), ("3600", "1 hour"),
                 ("86400", "24 hours"), ("604800", "7 days"))  # fmt: skip
QUIET_CHOICES = (("", "Never: keep it to the end"), ("300", "5 minutes"), ("3600", "1 hour"))
"""When a rotation's grace period may end early: once the old secret was unused this long."""


class FormInvalid(Exception):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(", ".join(fields))
        self.fields = fields


async def read_form(
    request: Request, secrets: ConsoleSecrets, binding: str | None
) -> dict[str, Any]:
    """The posted form, if it came from one of our own pages (CSRF token, Origin)."""
    origin = request.headers.get("origin")
    # Compare hosts only: behind a TLS-terminating proxy the scheme seen here is http.
    same_origin = origin is None or (
        origin != "null" and urlsplit(origin).netloc == request.headers.get("host", "")
    )
    posted = await request.form()
    values: dict[str, Any] = {}
    for name in posted:
        # Browsers send a textarea's line breaks as CRLF; the contracts keep plain \n.
        items = [v.replace("\r\n", "\n") for v in posted.getlist(name) if isinstance(v, str)]
        values[name] = items if len(items) > 1 else (items[0] if items else "")
    sent = values.pop("csrf_token", None)
    if not same_origin or not secrets.csrf_ok(binding, sent if isinstance(sent, str) else None):
        raise ApiError(
            403, "csrf_failed", "This form has expired or did not come from this console."
        )
    return values


def one(values: dict[str, Any], name: str) -> str:
    """A field that takes one value (sent twice, it is refused, not joined)."""
    value = values.get(name, "")
    if isinstance(value, list):
        raise FormInvalid({name: "Send this field once."})
    return str(value).strip()


def reason(values: dict[str, Any]) -> str:
    """The reason a person gave for a change, cut to what the contracts keep."""
    return one(values, "reason")[:500]


def local_page(target: str) -> str:
    """Only a page of this console is a place to go back to (no open redirect)."""
    if target.startswith(BASE + "/") and not target.startswith("//") and "\\" not in target:
        return target[:500]
    return KEYS_PAGE


def once(values: dict[str, Any], command_type: str, action: str, sent: str) -> use_cases.Once:
    """A form carried out once: its one-time field (absent from a form rendered before it
    existed) and what it says are the request, so a refreshed page is a repeat, while the
    same form changed (back, edit, send again) is a new request."""
    token = one(values, "once")[:64]
    return use_cases.Once(command_type, action, f"{token}\n{sent}" if token else None, sent)


def key_attributes(values: dict[str, Any], offered_scopes: list[str]) -> KeyAttributes:
    """The create form as KeyAttributes; FormInvalid names each field that is wrong."""
    days = one(values, "expires_in_days")
    if days not in {value for value, _ in naming.EXPIRY_CHOICES}:
        raise FormInvalid({"expires_at": "Choose one of the expiry periods offered."})
    scopes = values.get("scopes", [])
    scopes = [scopes] if isinstance(scopes, str) else list(scopes)
    if not set(scopes) <= set(offered_scopes):
        raise FormInvalid({"scopes": "Choose among the scopes offered."})
    raw: dict[str, Any] = {
        "name": one(values, "name"),
        "description": one(values, "description") or None,
        "environment": one(values, "environment") or PRODUCTION,
        "scopes": scopes,
        "expires_at": datetime.now(UTC) + timedelta(days=int(days)) if days else None,
        "canary": one(values, "canary") == "on",
        **limits(values),
    }
    try:
        return KeyAttributes.model_validate(raw)
    except ValidationError as invalid:
        raise FormInvalid(field_errors(invalid)) from None


RATE_FIELDS = ("rate_limit_per_minute", "rate_limit_per_hour", "rate_limit_per_day")
BUDGET_PERIODS = (("day", "per day (UTC)"), ("month", "per calendar month (UTC)"))


def limits(values: dict[str, Any]) -> dict[str, Any]:
    """The limit fields of a form as KeyAttributes takes them (each checked there): the
    rates, the token budget (a number and its period) and the networks, one per line."""
    found: dict[str, Any] = {name: one(values, name) or None for name in RATE_FIELDS}
    tokens = one(values, "token_budget_tokens")
    found["token_budget"] = (
        {"tokens": tokens, "period": one(values, "token_budget_period") or "month"}
        if tokens
        else None
    )
    networks = one(values, "allowed_cidrs").replace(",", "\n").splitlines()
    found["allowed_cidrs"] = [n.strip() for n in networks if n.strip()]
    return found


def pinned_version(values: dict[str, Any]) -> int:
    """The key's version the edit form was rendered with: a stale form is a conflict."""
    pinned = one(values, "version")
    if not (pinned.isascii() and pinned.isdigit() and 0 < int(pinned) < 2**31):
        raise ApiError(422, "invalid", "The form lost the key's version; reload the page.")
    return int(pinned)


def grace_seconds(values: dict[str, Any]) -> int:
    """How long a rotated key's previous secret keeps working: one of the choices offered."""
    grace = one(values, "grace_period_seconds") or "0"
    if grace not in {value for value, _ in GRACE_CHOICES}:
        raise ApiError(422, "invalid", "Choose one of the grace periods offered.")
    return int(grace)


def quiet_seconds(values: dict[str, Any], grace: int) -> int | None:
    """After how long unused the previous secret stops early (docs/rotation.md): one of
    the choices offered, and only with a grace period."""
    quiet = one(values, "end_grace_when_quiet_seconds")
    if quiet not in {value for value, _ in QUIET_CHOICES}:
        raise ApiError(422, "invalid", "Choose one of the times offered.")
    return int(quiet) if quiet and grace else None  # no grace period: nothing to end early


def field_errors(invalid: ValidationError) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in invalid.errors():
        field = str(error["loc"][0]) if error["loc"] else "form"
        found.setdefault(field, error["msg"])
    return found
