"""Warnings ahead of deadlines, as arithmetic: when a key_expiring warning is due and
which one (N days, then 1 day, before expires_at), when grace_period_ending is, and that
each is one alert however often it is found."""

from __future__ import annotations

from datetime import UTC, datetime

from services.usage.domain.alerts import to_alert
from services.usage.domain.requests import Request
from services.usage.domain.warnings import (
    DAY,
    expiry_thresholds,
    grace_period_ending,
    key_expiring,
    previous_secret_uses,
)

KEY = "6f1c3b0e-4d7a-4c2b-9e8f-0a1b2c3d4e5f"
EXPIRES = datetime(2026, 12, 20, 12, 0, tzinfo=UTC).timestamp()
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _threshold(days_left: float, days: int = 7) -> int | None:
    found = key_expiring(KEY, "acme", EXPIRES, EXPIRES - days_left * DAY, days)
    return None if found is None else int(found.expected)


def test_the_first_warning_comes_n_days_before_expiry_and_the_last_one_day_before() -> None:
    assert expiry_thresholds(7) == (7, 1) and expiry_thresholds(1) == (1,)
    assert _threshold(7.01) is None
    assert _threshold(7) == 7 and _threshold(6) == 7 and _threshold(1.01) == 7
    assert _threshold(1) == 1 and _threshold(0.01) == 1
    assert _threshold(0) is None and _threshold(-1) is None  # expired: KeyExpired says so
    assert _threshold(9, days=10) == 10 and _threshold(9, days=7) is None


def test_each_warning_is_one_alert_however_often_it_is_found() -> None:
    def alert_id(days_left: float, expires_at: float = EXPIRES) -> object:
        found = key_expiring(KEY, "acme", expires_at, expires_at - days_left * DAY, 7)
        assert found is not None
        return to_alert(found, "CI", NOW).alert_id

    assert alert_id(6) == alert_id(5.5) == alert_id(2)  # found again in later scans
    assert alert_id(0.5) != alert_id(6)  # the 1-day warning is another alert
    assert alert_id(6, EXPIRES + DAY) != alert_id(6)  # so is a moved expiry's


def test_grace_ending_is_warned_in_its_last_hour_if_the_old_secret_was_used_since() -> None:
    rotated, ends = EXPIRES - 2 * 3600, EXPIRES
    used = rotated + 60

    def due(now: float, last_use: float | None = used) -> bool:
        return grace_period_ending(KEY, "acme", ends, rotated, last_use, now) is not None

    assert not due(ends - 3601) and due(ends - 3600) and due(ends - 1) and not due(ends)
    assert not due(ends - 60, None) and not due(ends - 60, rotated - 1)
    found = grace_period_ending(KEY, "acme", ends, rotated, used, ends - 1800)
    later = grace_period_ending(KEY, "acme", ends, rotated, used + 600, ends - 60)
    assert found is not None and later is not None
    assert to_alert(found, None, NOW).alert_id == to_alert(later, None, NOW).alert_id


def test_only_accepted_requests_with_the_old_secret_are_its_uses() -> None:
    def request(at: float, status: int, previous: bool) -> Request:
        return Request("r", KEY, "acme", at, int(at // 60), "203.0.113.0/24", status, 0, 0,
                       1.0, None, "/", previous)  # fmt: skip

    batch = [request(10, 200, True), request(20, 401, True), request(30, 200, False)]
    assert previous_secret_uses(batch) == {KEY: 10}
