"""Limits decided at verification, in memory: the book of limit states and admissions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from contracts import LimitState, TokenBudget
from contracts.limits import LimitWindow
from services.keys.app.limit_book import LimitBook
from services.keys.app.limits import KeyLimits, reset_text, retry_after
from services.keys.app.verification import KnownSecret, Verdict, admit

NOW = datetime(2026, 12, 6, 12, 30, 15, tzinfo=UTC)
HOUR_END = datetime(2026, 12, 6, 13, tzinfo=UTC)
MINUTE_END = datetime(2026, 12, 6, 12, 31, tzinfo=UTC)


def _limits(
    minute: int | None = None,
    hour: int | None = None,
    day: int | None = None,
    budget: TokenBudget | None = None,
    cidrs: list[str] | None = None,
) -> KeyLimits:
    return KeyLimits.of(minute, hour, day, budget, cidrs or [])


def _state(key_id: uuid.UUID, at: datetime = NOW, **fields: object) -> LimitState:
    return LimitState.model_validate(
        {"key_id": key_id, "account_id": "demo", "state": "clear", "as_of": at, **fields}
    )


def test_a_key_without_limits_is_admitted_with_none_to_show() -> None:
    admission = LimitBook().admit(uuid.uuid4(), _limits(), NOW.timestamp())
    assert admission.refused is None and admission.windows == ()


def test_a_single_verifier_refuses_the_request_past_the_limit_until_the_window_ends() -> None:
    book, key = LimitBook(), uuid.uuid4()
    limits = _limits(minute=3)
    answers = [book.admit(key, limits, NOW.timestamp()) for _ in range(4)]
    assert [a.refused for a in answers] == [None, None, None, "rate_limited"]
    assert [a.windows[0][2] for a in answers[:3]] == [2, 1, 0]
    assert answers[3].reset_at == MINUTE_END.timestamp()
    assert retry_after(answers[3].reset_at, NOW.timestamp()) == 45
    assert book.admit(key, limits, MINUTE_END.timestamp()).refused is None


def test_a_limited_state_refuses_until_it_ends_and_a_raised_limit_allows_at_once() -> None:
    book, key = LimitBook(), uuid.uuid4()
    book.observe(
        _state(
            key,
            state="rate_limited",
            limit_name="rate_limit_per_hour",
            until=HOUR_END,
            counted=100,
            limit=100,
        )
    )
    refused = book.admit(key, _limits(hour=100), NOW.timestamp())
    assert (refused.refused, refused.limit_name) == ("rate_limited", "rate_limit_per_hour")
    assert reset_text(refused.reset_at) == "2026-12-06T13:00:00.000000Z"
    assert book.admit(key, _limits(hour=150), NOW.timestamp()).windows[0][2] == 49
    assert book.admit(key, _limits(), NOW.timestamp()).refused is None  # limit removed
    assert book.admit(key, _limits(hour=100), HOUR_END.timestamp()).refused is None


def test_remaining_is_the_last_count_less_what_this_verifier_admitted_since() -> None:
    book, key = LimitBook(), uuid.uuid4()
    limits = _limits(hour=10)
    windows = {"rate_limit_per_hour": LimitWindow(counted=7, limit=10, reset_at=HOUR_END)}
    book.observe(_state(key, windows=windows))
    assert [book.admit(key, limits, NOW.timestamp()).refused for _ in range(4)] == [
        None,
        None,
        None,
        "rate_limited",
    ]
    # A newer count replaces what was admitted here; an older state is not taken.
    later = {"rate_limit_per_hour": LimitWindow(counted=8, limit=10, reset_at=HOUR_END)}
    book.observe(_state(key, NOW + timedelta(seconds=1), windows=later))
    assert not book.observe(_state(key, NOW, windows=windows))
    assert book.peek(key, limits, NOW.timestamp()).windows[0][2] == 2


def test_a_budget_is_exhausted_by_the_tokens_counted_and_names_the_longest_wait() -> None:
    book, key = LimitBook(), uuid.uuid4()
    day_end = datetime(2026, 12, 7, tzinfo=UTC)
    book.observe(
        _state(
            key,
            state="budget_exhausted",
            limit_name="token_budget",
            until=day_end,
            counted=12_000,
            limit=10_000,
            windows={
                "token_budget": LimitWindow(counted=12_000, limit=10_000, reset_at=day_end),
                "rate_limit_per_minute": LimitWindow(counted=5, limit=5, reset_at=MINUTE_END),
            },
        )
    )
    limits = _limits(minute=5, budget=TokenBudget(tokens=10_000, period="day"))
    refused = book.admit(key, limits, NOW.timestamp())
    assert (refused.refused, refused.limit_name) == ("budget_exhausted", "token_budget")
    assert refused.reset_at == day_end.timestamp()
    raised = _limits(minute=5, budget=TokenBudget(tokens=20_000, period="day"))
    assert book.admit(key, raised, NOW.timestamp()).refused == "rate_limited"
    assert book.admit(key, raised, MINUTE_END.timestamp()).refused is None


def test_a_monthly_budget_resets_on_the_first_of_the_month() -> None:
    limits = _limits(budget=TokenBudget(tokens=5, period="month"))
    admission = LimitBook().admit(uuid.uuid4(), limits, NOW.timestamp())
    assert reset_text(admission.windows[0][3]) == "2027-01-01T00:00:00.000000Z"


def _known(limits: KeyLimits, status: str = "active") -> KnownSecret:
    return KnownSecret(
        uuid.uuid4(), "demo", "production", (), None, status, None, None, limits=limits
    )


def test_status_comes_before_the_network_and_the_network_before_the_limits() -> None:
    book = LimitBook()
    networks = _limits(minute=1, cidrs=["203.0.113.0/24", "2001:db8::/32"])
    at = NOW.timestamp()
    disabled = _known(networks, "disabled")
    assert admit(Verdict("disabled", disabled), book, "198.51.100.9", at).code == "disabled"
    known = _known(networks)
    valid = Verdict("valid", known)
    assert admit(valid, book, "198.51.100.9", at).code == "ip_not_allowed"
    assert admit(valid, book, None, at).code == "ip_not_allowed"  # fail closed
    assert admit(valid, book, "not an address", at).code == "ip_not_allowed"
    assert admit(valid, book, "2001:db8::9", at).code == "valid"
    assert admit(valid, book, "203.0.113.9", at).code == "rate_limited"
    assert admit(Verdict("valid", _known(_limits())), book, None, at).code == "valid"
