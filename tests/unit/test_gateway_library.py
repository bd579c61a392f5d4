"""The Python gateway library's decisions, without a broker: the key shape it accepts, its
limit book, its record ids and its middleware's answers."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from instagen_gateway import GatewayMiddleware, Verdict, is_well_formed, record_id_for
from instagen_gateway.limits import LimitBook

from services.keys.domain.secret import generate_secret
from services.keys.domain.secret import is_well_formed as service_accepts

NOW = datetime(2026, 12, 6, 12, 30, 15, tzinfo=UTC).timestamp()
KEY = str(uuid.uuid4())


@given(st.sampled_from(["production", "staging", "dev-eu-1"]), st.text(max_size=60))
def test_the_library_accepts_exactly_the_keys_the_service_accepts(env: str, noise: str) -> None:
    issued = generate_secret(env).plaintext
    assert is_well_formed(issued)
    for candidate in (issued[:-1] + ("0" if issued[-1] != "0" else "1"), noise, issued + "x"):
        assert is_well_formed(candidate) == service_accepts(candidate)


def _state(**fields: Any) -> dict[str, Any]:
    return {"key_id": KEY, "account_id": "demo", "as_of": "2026-12-06T12:30:00.000000Z"} | fields


def test_a_limited_state_refuses_until_its_window_ends_unless_the_limit_was_raised() -> None:
    book = LimitBook()
    until = "2026-12-06T13:00:00.000000Z"
    book.apply(
        _state(state="rate_limited", limit_name="rate_limit_per_hour", until=until, counted=100)
    )
    refused = book.decide(KEY, {"rate_limit_per_hour": 100}, NOW)
    assert refused.refused == "rate_limited"
    assert refused.reset_at == datetime(2026, 12, 6, 13, tzinfo=UTC).timestamp()
    assert book.decide(KEY, {"rate_limit_per_hour": 100}, NOW + 3600).refused is None
    assert book.decide(KEY, {"rate_limit_per_hour": 200}, NOW).refused is None


def test_an_older_state_never_replaces_a_newer_one() -> None:
    book = LimitBook()
    until = "2026-12-06T13:00:00.000000Z"
    book.apply(_state(state="clear", as_of="2026-12-06T12:30:05.000000Z"))
    book.apply(_state(state="budget_exhausted", limit_name="token_budget", until=until))
    assert book.decide(KEY, {"token_budget": 10}, NOW).refused is None


def test_requests_let_in_here_count_against_what_the_last_state_left() -> None:
    book = LimitBook()
    window = {"counted": 97, "limit": 100, "reset_at": "2026-12-06T13:00:00.000000Z"}
    book.apply(_state(state="clear", windows={"rate_limit_per_hour": window}))
    configured = {"rate_limit_per_hour": 100}
    for remaining in (2, 1, 0):  # what is left after this request
        decision = book.decide(KEY, configured, NOW)
        assert decision.refused is None
        assert decision.limits["rate_limit_per_hour"]["remaining"] == remaining
        book.admit(KEY, configured, NOW)
    assert book.decide(KEY, configured, NOW).refused == "rate_limited"
    # A state from before these requests does not forget them ...
    book.apply(
        _state(
            state="clear",
            as_of="2026-12-06T12:30:10.000000Z",
            windows={"rate_limit_per_hour": window | {"counted": 98}},
        )
    )
    assert book.decide(KEY, configured, NOW).refused == "rate_limited"
    # ... one that counted them starts the local count again.
    book.apply(
        _state(
            state="clear",
            as_of="2026-12-06T12:30:16.000000Z",
            windows={"rate_limit_per_hour": window | {"counted": 98}},
        )
    )
    assert book.decide(KEY, configured, NOW + 2).limits["rate_limit_per_hour"]["remaining"] == 1


def test_a_record_id_is_the_request_id_or_derived_from_it() -> None:
    request_id = str(uuid.uuid4())
    assert record_id_for(request_id) == request_id
    assert record_id_for("req-42") == record_id_for("req-42") != record_id_for("req-43")
    assert record_id_for(None) != record_id_for(None)


class _Answers:
    """A verifier that answers from a table (the middleware's logic alone)."""

    def __init__(self, verdicts: dict[str, Verdict]) -> None:
        self.verdicts = verdicts

    async def verify(self, secret: str, **_: Any) -> Verdict:
        return self.verdicts.get(secret, Verdict("not_found"))


async def _app(scope: Any, receive: Any, send: Any) -> None:
    verdict = scope["state"]["instagen"]
    body = json.dumps({"key_id": verdict.key_id}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "missing_key"),
        ({"authorization": "Bearer ig_live_unknown"}, 401, "not_found"),
        ({"x-api-key": "limited"}, 429, "rate_limited"),
        ({"x-api-key": "elsewhere"}, 403, "ip_not_allowed"),
        ({"authorization": "Bearer good"}, 200, None),
    ],
)
async def test_the_middleware_answers_refusals_itself_and_passes_the_rest(
    headers: dict[str, str], status: int, code: str | None
) -> None:
    verdicts = {
        "good": Verdict("valid", KEY, "demo"),
        "limited": Verdict("rate_limited", KEY, "demo", retry_after_seconds=7, reset_at="x"),
        "elsewhere": Verdict("ip_not_allowed", KEY, "demo"),
    }
    app = GatewayMiddleware(_app, verifier=_Answers(verdicts))  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"
    ) as client:
        answer = await client.get("/v1/generate", headers=headers)
    assert answer.status_code == status
    if code is None:
        assert answer.json() == {"key_id": KEY}
    else:
        assert answer.json()["error"]["code"] == code
    if status == 429:
        assert answer.headers["retry-after"] == "7"
