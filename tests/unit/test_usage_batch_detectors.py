"""The detectors on a batch's per-key, per-minute rollups give what observing each request
gives: the same findings in the same order, the same state, whatever the batch."""

from __future__ import annotations

import copy
import uuid
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from services.usage.domain.activity import KeyActivity, observe_batch
from services.usage.domain.detectors import DetectorConfig, Finding
from services.usage.domain.keys import KeyInfo
from services.usage.domain.requests import Request, network_of, roll_up

T0 = 1_800_000_000.0
KEYS = [str(uuid.UUID(int=n)) for n in range(1, 4)]
CONFIG = DetectorConfig(
    spike_min_volume=8,
    spike_warmup_minutes=3,
    spike_cold_volume=12,
    auth_failure_burst=3,
    new_network_min_history_s=300.0,
    new_network_min_active_minutes=2,
    new_network_max_known=4,
    dormant_s=900.0,
    lateness_s=30.0,
    cooldown_s=60.0,
)
"""Small thresholds, so that a few dozen requests cross every one of them."""


def _key(key_id: str, kind: str) -> KeyInfo | None:
    if kind == "unknown":
        return None
    base = KeyInfo(
        key_id, "acme", "k", "production", None, "active", T0 - 3600, "active", T0 - 3600, None, 1
    )
    changes: dict[str, dict[str, object]] = {
        "active": {},
        "hourly": {"rate_limit_per_hour": 20},
        "disabled": {"status": "disabled", "status_since": T0 + 200, "previous_status": "active"},
        "expiring": {"expires_at": T0 + 300},
    }
    return replace(base, **changes[kind])  # type: ignore[arg-type]


def requests_st(span: float) -> st.SearchStrategy[list[tuple[str, float, int, str]]]:
    """Requests of the keys within `span` seconds."""
    return st.lists(_request_st(span), min_size=1, max_size=120)


def _request_st(span: float) -> st.SearchStrategy[tuple[str, float, int, str]]:
    return st.tuples(
        st.sampled_from(KEYS),
        st.floats(min_value=0, max_value=span, allow_nan=False),
        st.sampled_from([200, 200, 200, 200, 200, 401, 429, 500]),
        st.sampled_from(
            ["203.0.113.7", "203.0.113.9", "198.51.100.1", "192.0.2.1", "10.1.2.3", "10.9.9.9"]
        ),
    )


def _requests(drawn: list[tuple[str, float, int, str]]) -> list[Request]:
    return [
        Request(
            str(uuid.uuid4()),
            key,
            "acme",
            T0 + at,
            int((T0 + at) // 60),
            network_of(ip),
            status,
            1,
            2,
            5.0,
        )
        for key, at, status, ip in drawn
    ]


@settings(max_examples=300, deadline=None)
@given(
    history=requests_st(600.0),
    batch=requests_st(90.0),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=5),
    kinds=st.tuples(
        *[st.sampled_from(["unknown", "active", "hourly", "disabled", "expiring"]) for _ in KEYS]
    ),
    drift=st.one_of(
        st.floats(min_value=0, max_value=700), st.floats(min_value=1400, max_value=1700)
    ),
)
def test_rollups_and_requests_advance_the_detectors_alike(
    history: list[tuple[str, float, int, str]],
    batch: list[tuple[str, float, int, str]],
    cuts: list[int],
    kinds: tuple[str, ...],
    drift: float,
) -> None:
    keys = {key_id: _key(key_id, kind) for key_id, kind in zip(KEYS, kinds, strict=True)}
    one: dict[str, KeyActivity] = {key_id: KeyActivity(key_id, "acme") for key_id in KEYS}
    warm: list[Finding] = []
    for r in _requests(history):  # a past, so that states have histories, baselines, networks
        one[r.key_id].observe(r, keys[r.key_id], CONFIG, warm)
    by_batch = copy.deepcopy(one)
    later = [
        r._replace(at=r.at + drift, minute=int((r.at + drift) // 60)) for r in _requests(batch)
    ]
    expected: list[Finding] = []
    for r in later:
        one[r.key_id].observe(r, keys[r.key_id], CONFIG, expected)
    found: list[Finding] = []
    start = 0
    for size in [*cuts, len(later)]:  # the same requests in batches of any sizes
        part = later[start : start + size]
        start += size
        if part:
            observe_batch(by_batch, part, roll_up(part), keys.get, CONFIG, found)
    assert found == expected
    for key_id in KEYS:
        mine, theirs = by_batch[key_id], one[key_id]
        assert (mine.first_used_at, mine.last_used_at, mine.last_failure_at) == (
            theirs.first_used_at,
            theirs.last_used_at,
            theirs.last_failure_at,
        )
        assert (mine.folded_through, mine.open, mine.networks, mine.fired) == (
            theirs.folded_through,
            theirs.open,
            theirs.networks,
            theirs.fired,
        )
        assert mine.baseline == theirs.baseline
        assert (mine.hour.latest, mine.hour.total, mine.hour.counts) == (
            theirs.hour.latest,
            theirs.hour.total,
            theirs.hour.counts,
        )


def _both(
    history: list[tuple[float, int]], batch: list[tuple[float, int]], key: KeyInfo | None
) -> list[Finding]:
    """The findings of `batch` (after `history`), request by request and by rollups
    (asserted equal): (seconds after T0, status) of one key from one network."""
    states = [KeyActivity(KEYS[0], "acme") for _ in range(2)]
    for state in states:
        for r in _requests([(KEYS[0], at, status, "203.0.113.7") for at, status in history]):
            state.observe(r, key, CONFIG, [])
    later = _requests([(KEYS[0], at, status, "203.0.113.7") for at, status in batch])
    expected: list[Finding] = []
    for r in later:
        states[0].observe(r, key, CONFIG, expected)
    found: list[Finding] = []
    observe_batch({KEYS[0]: states[1]}, later, roll_up(later), lambda _: key, CONFIG, found)
    assert found == expected
    return found


def test_a_spike_within_a_batch_is_found_as_request_by_request() -> None:
    found = _both([(0.0, 200)], [(1.0 + i, 200) for i in range(20)], _key(KEYS[0], "active"))
    assert [f.kind for f in found] == ["volume_spike"]


def test_an_hourly_limit_passed_within_a_batch_is_found() -> None:
    history = [(11.0 * i, 200) for i in range(10)] + [(150.0 + 5 * i, 200) for i in range(5)]
    found = _both(history, [(171.0 + i, 200) for i in range(6)], _key(KEYS[0], "hourly"))
    assert [f.kind for f in found] == ["rate_limit_exceeded"]


def test_a_disabled_key_used_within_a_batch_is_found() -> None:
    key = replace(_key(KEYS[0], "disabled"), status_since=T0 - 100)  # type: ignore[type-var]
    found = _both([(40.0, 200)], [(60.0 + i, 200) for i in range(5)], key)
    assert [f.kind for f in found] == ["disabled_key_in_use"]


def test_a_quiet_batch_of_a_known_key_is_counted_by_its_rollups() -> None:
    state = KeyActivity(KEYS[0], "acme")
    out: list[Finding] = []
    first = _requests([(KEYS[0], 0.0, 200, "203.0.113.7")])
    state.observe(first[0], None, CONFIG, out)
    quiet = _requests([(KEYS[0], 1.0 + i, 200, "203.0.113.7") for i in range(5)])
    assert state.observe_quietly(roll_up(quiet), None, CONFIG)
    assert state.last_used_at == T0 + 5.0
    assert state.hour.total == 6
    assert out == []
