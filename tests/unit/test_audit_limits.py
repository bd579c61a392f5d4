"""Audit records a key's limit state once per change, never per repeat or count refresh."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from contracts import LimitState
from services.audit.domain.limits import Limited, changes, from_details

KEY = uuid.uuid4()
T0 = datetime(2026, 12, 6, 14, 0, 5, tzinfo=UTC)


def state(kind: str = "clear", limit_name: str | None = None, minutes: int = 1) -> LimitState:
    limited = kind != "clear"
    return LimitState(
        key_id=KEY,
        account_id="acme",
        state=kind,
        limit_name=limit_name if limited else None,
        until=T0.replace(second=0) + timedelta(minutes=minutes) if limited else None,
        counted=100 if limited else None,
        limit=100 if limited else None,
        as_of=T0,
    )


def test_one_entry_per_change_none_for_repeats_or_refreshes() -> None:
    last: dict[str, Limited | None] = {}
    limited = state("rate_limited", "rate_limit_per_minute")
    stream = [state(), state(), limited, limited, state(), state()]
    entries = changes(stream, last)
    assert [e.action for e in entries] == ["limit.rate_limited", "limit.cleared"]
    assert entries[1].source_id == f"{entries[0].source_id}:cleared"
    assert last == {str(KEY): None}


def test_each_change_has_one_source_id_so_a_repeat_after_a_restart_is_the_same_record() -> None:
    budget = state("budget_exhausted", "token_budget", minutes=600)
    first = changes([budget, state()], {})
    again = changes([budget, state()], {})  # a process that remembers nothing
    assert [e.source_id for e in first] == [e.source_id for e in again]
    minute = state("rate_limited", "rate_limit_per_minute")
    moved = changes([minute, budget], {})
    assert [e.action for e in moved] == ["limit.rate_limited", "limit.budget_exhausted"]


def test_a_stored_record_says_where_the_key_stands() -> None:
    [entry] = changes([state("rate_limited", "rate_limit_per_hour", 60)], {})
    assert from_details(entry.action, entry.details) == Limited(
        "rate_limited", "rate_limit_per_hour", "2026-12-06T15:00:00.000000Z"
    )
    assert from_details("limit.cleared", "{}") is None
