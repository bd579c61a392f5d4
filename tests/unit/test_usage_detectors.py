"""The usage detectors as pure functions of a key's requests, in simulated event time."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from contracts import Alert
from services.usage.domain.activity import KeyActivity
from services.usage.domain.alerts import alert_id, to_alert
from services.usage.domain.baseline import Baseline
from services.usage.domain.containment import ContainmentPolicy, disable_command
from services.usage.domain.detectors import (
    DetectorConfig,
    Finding,
    spike_thresholds,
)
from services.usage.domain.keys import KeyInfo
from services.usage.domain.lifecycle import unused_key
from services.usage.domain.requests import (
    LATENCY_SUM_CAP,
    TOKENS_CAP,
    Request,
    capped,
    network_of,
    roll_up,
)
from services.usage.domain.trailing_hour import TrailingHour

CONFIG = DetectorConfig()
T0 = 1_800_000_000.0  # a Wednesday in 2027, on a minute boundary
MIN = 60.0
HOUR = 3600.0
DAY = 86400.0
KEY = str(uuid.uuid4())


def request(at: float, ip: str = "203.0.113.7", status: int = 200, key: str = KEY) -> Request:
    return Request(
        str(uuid.uuid4()), key, "acme", at, int(at // 60), network_of(ip), status, 10, 20, 50.0
    )


def key_info(**changes: object) -> KeyInfo:
    created = T0 - 3 * HOUR
    base = KeyInfo(
        KEY, "acme", "CI", "production", None, "active", created, "active", created, None, 1
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def steady(start: float, minutes: int, per_minute: int, ip: str = "203.0.113.7") -> list[Request]:
    """`per_minute` requests spread over each of `minutes` minutes from `start`."""
    return [
        request(start + m * MIN + i * (MIN / per_minute), ip)
        for m in range(minutes)
        for i in range(per_minute)
    ]


def run(
    requests: Iterable[Request],
    key: KeyInfo | None = None,
    state: KeyActivity | None = None,
    config: DetectorConfig = CONFIG,
) -> list[Finding]:
    state = state or KeyActivity(KEY, "acme")
    found: list[Finding] = []
    for r in requests:
        state.observe(r, key, config, found)
    return found


def kinds(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.kind, f.severity) for f in findings]


# --- normal traffic ---------------------------------------------------------------------
def test_several_hours_of_steady_traffic_raise_nothing() -> None:
    key = key_info(rate_limit_per_hour=5000, created_at=T0 - HOUR)
    traffic = []
    for hour in range(6):  # jitter: 15 to 30 requests a minute, two networks
        for m in range(60):
            per_minute = 15 + (hour * 7 + m * 13) % 16
            ip = "203.0.113.7" if m % 3 else "198.51.100.20"
            traffic += steady(T0 + hour * HOUR + m * MIN, 1, per_minute, ip)
    assert run(traffic, key) == []


def test_the_baseline_follows_the_usual_volume() -> None:
    state = KeyActivity(KEY, "acme")
    run(steady(T0, 120, 30), state=state)
    assert state.baseline.minutes >= 115
    assert state.baseline.mean == pytest.approx(30, abs=0.5)
    thresholds = spike_thresholds(state.baseline, CONFIG)
    assert thresholds.established
    assert thresholds.warning == 100  # the minimum volume beats 3x30 and 30 + 6 sqrt(30)


# --- volume_spike ------------------------------------------------------------------------
def test_a_spike_over_the_baseline_raises_one_warning_within_its_minute() -> None:
    state = KeyActivity(KEY, "acme")
    assert run(steady(T0, 60, 20), state=state) == []
    spike = steady(T0 + 60 * MIN, 1, 300)
    found = run(spike + steady(T0 + 61 * MIN, 10, 20), state=state)
    assert kinds(found) == [("volume_spike", "warning")]
    assert found[0].observed == 101  # fired on the request that passed the threshold
    assert found[0].window_from == T0 + 60 * MIN
    assert found[0].evidence["threshold"] == 100


def test_a_huge_spike_also_raises_a_critical_alert() -> None:
    state = KeyActivity(KEY, "acme")
    run(steady(T0, 60, 20), state=state)
    found = run(steady(T0 + 60 * MIN, 1, 1500), state=state)
    assert kinds(found) == [("volume_spike", "warning"), ("volume_spike", "critical")]


def test_a_new_key_is_judged_against_the_cold_start_volume() -> None:
    assert run(steady(T0, 3, 500)) == []
    assert kinds(run(steady(T0, 1, 700))) == [("volume_spike", "warning")]


def test_a_sustained_spike_raises_one_alert_per_cooldown_window() -> None:
    state = KeyActivity(KEY, "acme")
    run(steady(T0, 60, 20), state=state)
    found = run(steady(T0 + 60 * MIN, 30, 400), state=state)
    assert kinds(found) == [("volume_spike", "warning")]


def test_late_requests_count_in_the_hour_but_not_in_a_closed_minute() -> None:
    state = KeyActivity(KEY, "acme")
    run(steady(T0, 60, 20), state=state)
    run([request(T0 + 70 * MIN)], state=state)  # the watermark passes minute 60
    late = [request(T0 + 60 * MIN + 1) for _ in range(500)]
    assert run(late, state=state) == []
    assert state.hour.total == 20 * 60 - 20 * 10 + 1 + 500 or state.hour.total > 500


# --- rate_limit_exceeded ----------------------------------------------------------------
def test_more_requests_in_an_hour_than_the_declared_limit_raise_one_alert() -> None:
    key = key_info(rate_limit_per_hour=100)
    assert run(steady(T0, 50, 1), key) == []  # 50 in the first hour
    found = run(steady(T0 + 2 * HOUR, 30, 4), key)  # 120 within 30 minutes
    assert kinds(found) == [("rate_limit_exceeded", "warning")]
    assert found[0].observed == 101 and found[0].expected == 100


def test_a_limit_passed_across_a_clock_hour_alerts_once_in_each_cooldown_hour() -> None:
    """The cooldown window is the fixed clock hour (the alert id's bucket): a condition
    still holding when the next hour starts is raised again there, once."""
    key = key_info(rate_limit_per_hour=100)
    found = run(steady(T0 + 2 * HOUR - 30 * MIN, 60, 4), key)  # 240 over 1h, 30' each side
    assert kinds(found) == [("rate_limit_exceeded", "warning")] * 2
    assert [f.bucket for f in found] == [T0 + HOUR, T0 + 2 * HOUR]


def test_the_trailing_hour_forgets_old_minutes() -> None:
    hour = TrailingHour()
    for minute in range(100):
        hour.add(minute, 2)
    assert hour.total == 120
    assert hour.add(500) == 1


# --- new_source_network -------------------------------------------------------------------
def history(days_ago: float, minutes: int = 15) -> list[Request]:
    return steady(T0 - days_ago * DAY, minutes, 3)


def test_a_network_never_seen_before_is_flagged_for_a_key_with_history() -> None:
    state = KeyActivity(KEY, "acme")
    assert run(history(2) + history(1), state=state) == []
    found = run([request(T0, "198.51.100.9"), request(T0 + 5, "198.51.100.77")], state=state)
    assert kinds(found) == [("new_source_network", "warning")]
    assert found[0].evidence["network"] == "198.51.100.0/24"
    assert found[0].evidence["known_networks"] == ["203.0.113.0/24"]


def test_a_new_key_learns_its_networks_silently() -> None:
    assert run([request(T0, "198.51.100.9"), request(T0 + 60, "192.0.2.1")]) == []


def test_ipv6_sources_are_grouped_by_48() -> None:
    assert network_of("2001:db8:1234:5678::1") == "2001:db8:1234::/48"
    assert network_of("203.0.113.250") == "203.0.113.0/24"


def test_a_key_used_from_very_many_networks_stops_being_judged_by_novelty() -> None:
    state = KeyActivity(KEY, "acme")
    many = [request(T0 - 2 * DAY + i, f"10.{i}.0.1") for i in range(60)]
    run(many + history(1), state=state)
    assert state.networks is None
    assert run([request(T0, "198.51.100.9")], state=state) == []


# --- auth_failure_burst -----------------------------------------------------------------
def test_a_burst_of_refusals_raises_one_alert() -> None:
    state = KeyActivity(KEY, "acme")
    run(steady(T0, 30, 5), key_info(), state=state)
    refusals = [request(T0 + 30 * MIN + i, status=401 if i % 2 else 403) for i in range(40)]
    found = run(refusals, key_info(), state=state)
    assert kinds(found) == [("auth_failure_burst", "warning")]
    assert found[0].observed == 21


def test_a_few_refusals_are_not_a_burst() -> None:
    assert run([request(T0 + i, status=401) for i in range(20)], key_info()) == []


# --- disabled_key_in_use ----------------------------------------------------------------
def test_any_attempt_with_a_disabled_key_is_critical() -> None:
    key = key_info(status="disabled", status_since=T0)
    found = run([request(T0 + 30, status=401), request(T0 + 40, status=401)], key)
    assert kinds(found) == [("disabled_key_in_use", "critical")]
    assert found[0].evidence["key_status"] == "disabled"


def test_requests_in_flight_when_the_key_was_disabled_are_not_an_alert() -> None:
    key = key_info(status="disabled", status_since=T0)
    assert run([request(T0 - 10), request(T0 + 2)], key) == []  # before, and within grace
    assert kinds(run([request(T0 + 60)], key)) == [("disabled_key_in_use", "critical")]


def test_a_key_past_its_expiry_counts_as_expired_before_the_event_arrives() -> None:
    key = key_info(expires_at=T0)
    found = run([request(T0 + 60, status=401)], key)
    assert found[0].evidence["key_status"] == "expired"


# --- dormant_key_reactivated ------------------------------------------------------------
def test_a_key_idle_for_thirty_days_raises_one_alert_when_used_again() -> None:
    state = KeyActivity(KEY, "acme")
    run(history(45), state=state)
    found = run([request(T0), request(T0 + 1)], state=state)
    assert kinds(found) == [("dormant_key_reactivated", "warning")]
    assert found[0].observed >= 44


def test_a_key_idle_for_less_than_thirty_days_is_not_dormant() -> None:
    state = KeyActivity(KEY, "acme")
    run(history(29), state=state)
    assert run([request(T0)], state=state) == []


def test_a_key_never_used_since_its_creation_long_ago_is_dormant_on_first_use() -> None:
    found = run([request(T0)], key_info(created_at=T0 - 40 * DAY))
    assert kinds(found) == [("dormant_key_reactivated", "warning")]
    assert found[0].evidence["never_used_before"] is True


# --- unused_key ---------------------------------------------------------------------------
def test_an_active_key_unused_for_thirty_days_is_reported_once_per_idle_stretch() -> None:
    finding = unused_key(KEY, "acme", T0, T0 - 60 * DAY, T0 - 31 * DAY, CONFIG)
    assert finding is not None and finding.severity == "info"
    assert finding.evidence["recommendation"] == "disable"
    later = unused_key(KEY, "acme", T0 + 10 * DAY, T0 - 60 * DAY, T0 - 31 * DAY, CONFIG)
    assert later is not None and later.bucket == finding.bucket
    assert unused_key(KEY, "acme", T0, T0 - 60 * DAY, T0 - 5 * DAY, CONFIG) is None
    assert unused_key(KEY, "acme", T0, T0 - 5 * DAY, None, CONFIG) is None


# --- alerts and containment -------------------------------------------------------------
def test_an_alert_is_explainable_and_its_id_is_derived_from_what_was_found() -> None:
    state = KeyActivity(KEY, "acme")
    run(steady(T0, 60, 20), state=state)
    finding = run(steady(T0 + 60 * MIN, 1, 300), state=state)[0]
    alert = to_alert(finding, "Production-LLM-API", detected_at=_now())
    again = to_alert(finding, "Production-LLM-API", detected_at=_now())
    assert alert.alert_id == again.alert_id == alert_id(KEY, "volume_spike", "warning", T0 + HOUR)
    assert "Production-LLM-API" in alert.summary and len(alert.summary) <= 500
    assert alert.observed == 101 and alert.expected == pytest.approx(20, abs=1)
    Alert.model_validate_json(alert.model_dump_json())


def test_containment_is_off_unless_a_policy_names_the_kind_and_severity() -> None:
    assert not ContainmentPolicy.parse("").enabled
    policy = ContainmentPolicy.parse("disabled_key_in_use:critical, volume_spike:warning")
    critical = _alert("disabled_key_in_use", "critical")
    assert policy.applies_to(critical)
    assert policy.applies_to(_alert("volume_spike", "critical"))
    assert not policy.applies_to(_alert("new_source_network", "warning"))
    command = disable_command(critical, _now())
    assert command.actor.type == "system" and command.actor.id == "usage-monitor"
    assert str(critical.alert_id) in command.data.reason
    assert disable_command(critical, _now()).command_id == command.command_id


@pytest.mark.parametrize("text", ["volume_spike", "nope:critical", "volume_spike:urgent"])
def test_a_malformed_policy_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"volume_spike|nope"):
        ContainmentPolicy.parse(text)


def test_rollups_add_up_per_key_and_minute() -> None:
    rows = roll_up([request(T0), request(T0 + 1, status=503), request(T0 + 61, status=401)])
    assert [(r.minute, r.requests) for r in rows] == [(int(T0 // 60), 2), (int(T0 // 60) + 1, 1)]
    assert rows[0].status_5xx == 1 and rows[1].auth_failures == 1
    assert rows[0].networks == {"203.0.113.0/24"}


def test_baseline_variance_reflects_jitter() -> None:
    calm, jumpy = Baseline(), Baseline()
    for i in range(100):
        calm.fold(50, 0.05)
        jumpy.fold(20 if i % 2 else 80, 0.05)
    assert calm.deviation < jumpy.deviation


def _now() -> datetime:
    return datetime.fromtimestamp(T0, UTC)


def _alert(kind: str, severity: str) -> Alert:
    finding = Finding(KEY, "acme", kind, severity, T0, T0 + 60, 1, 0, {}, T0)  # type: ignore[arg-type]
    return to_alert(finding, None, _now())


def test_stored_sums_are_held_to_their_caps_and_a_column_under_them_is_not_copied() -> None:
    under = [0, 2**53, TOKENS_CAP]
    assert capped(under, TOKENS_CAP) is under
    assert capped([1, 2**63, TOKENS_CAP + 1], TOKENS_CAP) == [1, TOKENS_CAP, TOKENS_CAP]
    assert capped([float("inf"), 1.5], LATENCY_SUM_CAP) == [LATENCY_SUM_CAP, 1.5]
    assert capped([], TOKENS_CAP) == []
    assert 2 * TOKENS_CAP < 2**63 - 1, "two stored counts add up inside a bigint"
