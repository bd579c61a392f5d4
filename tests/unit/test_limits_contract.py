"""The limits contract: key attributes that bound traffic, and the state on usage.limits."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pydantic import ValidationError

from contracts import KeyAttributes, KeyPatch, KeyUpdatedData, LimitState, TokenBudget
from contracts.limits import network_allows, window_bounds


def test_a_key_carries_every_kind_of_limit() -> None:
    attributes = KeyAttributes.model_validate(
        {
            "name": "Batch jobs",
            "rate_limit_per_minute": 60,
            "rate_limit_per_hour": 1000,
            "rate_limit_per_day": 10000,
            "token_budget": {"tokens": 10000, "period": "day"},
            "allowed_cidrs": ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"],
        }
    )
    assert attributes.token_budget == TokenBudget(tokens=10000, period="day")
    assert attributes.allowed_cidrs == ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]
    assert KeyAttributes(name="No limits").allowed_cidrs == []


@pytest.mark.parametrize(
    "networks",
    [["203.0.113.0/33"], ["not-a-network"], ["203.0.113.9/24"], ["10.0.0.0/8", "10.0.0.0/8"], [7]],
)
def test_a_malformed_network_is_refused_naming_the_field(networks: list[object]) -> None:
    with pytest.raises(ValidationError) as refused:
        KeyAttributes.model_validate({"name": "k", "allowed_cidrs": networks})
    assert refused.value.errors()[0]["loc"][0] == "allowed_cidrs"


@pytest.mark.parametrize(
    "budget", [{"tokens": 0, "period": "day"}, {"tokens": True, "period": "day"}, {"tokens": 5}]
)
def test_a_malformed_budget_is_refused(budget: object) -> None:
    with pytest.raises(ValidationError):
        KeyAttributes.model_validate({"name": "k", "token_budget": budget})


def test_a_patch_clears_a_budget_with_null_but_never_the_networks() -> None:
    assert KeyPatch.model_validate({"token_budget": None}).model_dump() == {"token_budget": None}
    with pytest.raises(ValidationError):
        KeyPatch.model_validate({"allowed_cidrs": None})
    schema = KeyPatch.model_json_schema()
    assert schema["properties"]["allowed_cidrs"]["type"] == "array"


def test_a_budget_change_reads_back_typed_from_json() -> None:
    update = KeyUpdatedData(
        before={"token_budget": None},
        after={"token_budget": {"tokens": 5, "period": "month"}},
    )
    again = KeyUpdatedData.model_validate_json(update.model_dump_json())
    assert again.after["token_budget"] == TokenBudget(tokens=5, period="month")


def test_networks_allow_their_addresses_in_either_family() -> None:
    networks = ["203.0.113.0/24", "2001:db8::/32"]
    assert network_allows(networks, "203.0.113.9")
    assert network_allows(networks, "::ffff:203.0.113.9")  # a dual-stack socket's IPv4 client
    assert network_allows(networks, "2001:db8::1")
    assert not network_allows(networks, "198.51.100.9")
    assert not network_allows(networks, "2001:db9::1")
    assert network_allows([], "198.51.100.9")


def test_windows_are_fixed_in_utc() -> None:
    at = datetime(2026, 12, 31, 23, 59, 30, 5, tzinfo=UTC)
    assert window_bounds("rate_limit_per_minute", None, at) == (
        datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert window_bounds("rate_limit_per_hour", None, at)[1] == datetime(2027, 1, 1, tzinfo=UTC)
    assert window_bounds("rate_limit_per_day", None, at)[0] == datetime(2026, 12, 31, tzinfo=UTC)
    assert window_bounds("token_budget", "day", at)[1] == datetime(2027, 1, 1, tzinfo=UTC)
    assert window_bounds("token_budget", "month", at) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    feb = datetime(2028, 2, 29, 12, tzinfo=UTC)
    assert window_bounds("token_budget", "month", feb)[1] == datetime(2028, 3, 1, tzinfo=UTC)


def test_a_limit_state_names_its_limit_and_end_when_limited() -> None:
    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    clear = LimitState(key_id=uuid4(), account_id="demo", state="clear", as_of=now)
    assert LimitState.model_validate_json(clear.model_dump_json()) == clear
    with pytest.raises(ValidationError):
        LimitState(key_id=uuid4(), account_id="demo", state="rate_limited", as_of=now)
    with pytest.raises(ValidationError):
        LimitState(
            key_id=uuid4(),
            account_id="demo",
            state="budget_exhausted",
            limit_name="rate_limit_per_hour",
            until=now,
            as_of=now,
        )
