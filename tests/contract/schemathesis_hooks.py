"""Schemathesis hooks for the contract test (loaded through SCHEMATHESIS_HOOKS).

`schema_valid_requests_pass_validation` stands in for schemathesis' own
positive_data_acceptance, with one difference: a request valid by its schema may still
break a rule no schema can state, and is then refused with that rule's own code. Only
these codes pass; a schema-valid request refused by validation still fails the run.
"""

from __future__ import annotations

from typing import Any, Final

import schemathesis

RULES_NO_SCHEMA_CAN_STATE: Final = {
    # A time in the past: JSON Schema has no "after now".
    "expires_at_in_past",
    # A webhook URL's host: where its name resolves, and whether that address is public.
    "url_invalid",
    # The same Idempotency-Key with another request: a fact about earlier requests.
    "idempotency_key_reused",
    # A network's arithmetic: its numbers in range, no host bits under its prefix, no two
    # that are the same network (198.51.100.7, 198.51.100.7/32); the pattern states the characters.
    "allowed_cidrs_invalid",
    # A rotation that ends its grace period early needs one (grace_period_seconds > 0):
    # a rule between two fields, each of which may be sent alone.
    "grace_period_required",
}
ACCEPTING: Final = {401, 403, 404, 409, 429}
"""Answers that are no refusal of the data: whose key, which resource, what state, how often."""


@schemathesis.check
def schema_valid_requests_pass_validation(ctx: Any, response: Any, case: Any) -> bool | None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if status < 400 or status >= 500 or status in ACCEPTING:
        return None  # 5xx are not_a_server_error's
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    if code in RULES_NO_SCHEMA_CAN_STATE:
        return None
    raise AssertionError(f"A request valid by the schema was refused: {status} {code}")
