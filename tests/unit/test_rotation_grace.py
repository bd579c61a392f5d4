"""Rotation that ends itself, without a broker: when the aggregate ends a grace period
early (never while the old secret is used, never past grace_period_ends_at, never twice),
what its event does to the key, and the gateway library refusing the old secret on it."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from instagen_gateway import Verifier as GatewayVerifier
from instagen_gateway.verifier import _digest, _Entry, _valid_for

from contracts import Actor
from services.keys.app.activity import Use, latest_uses
from services.keys.domain.errors import GraceRequired
from services.keys.domain.key import AccessKey, evolve
from services.keys.domain.recorded import Change, RecordedEvent

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
QUIET = 300


def _rotated(quiet: int | None = QUIET, grace: timedelta = timedelta(hours=1)) -> AccessKey:
    created = AccessKey(
        key_id=uuid.uuid4(), account_id="acme", name="CI", description=None,
        environment="production", scopes=(), rate_limit_per_hour=None, expires_at=None,
        prefix="ig_live_Ab3d", status="active", created_at=T0, updated_at=T0, version=1,
        secret_hash=b"old",
    )  # fmt: skip
    change = created.rotate("ig_live_Zx9q", b"new", T0 + grace, T0, quiet)
    return evolve(created, _recorded(created, change, T0))


def _recorded(key: AccessKey, change: Change, at: datetime) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        key_id=key.key_id,
        account_id=key.account_id,
        stream_version=key.version + 1,
        position=None,
        event_type=change.event_type,
        occurred_at=at,
        actor=Actor(type="system", id="keys-grace-scheduler"),
        correlation_id=None,
        causation_id=None,
        data=change.data.model_dump(mode="json"),
        secret_hash=change.secret_hash,
    )


def test_the_grace_period_ends_once_the_old_secret_was_quiet_for_the_time_asked() -> None:
    key = _rotated()
    used = T0 + timedelta(minutes=10)
    assert key.end_grace_if_quiet(used, used + timedelta(seconds=QUIET - 1)) is None
    change = key.end_grace_if_quiet(used, used + timedelta(seconds=QUIET))
    assert change is not None and change.event_type == "KeyGracePeriodEnded"
    assert change.data.model_dump() == {
        "reason": "old_secret_quiet",
        "ended_at": used + timedelta(seconds=QUIET),
        "last_used_at": used,
        "quiet_seconds": QUIET,
        "previous_prefix": "ig_live_Ab3d",
        "grace_period_ends_at": T0 + timedelta(hours=1),
    }


def test_an_old_secret_not_used_since_the_rotation_is_quiet_from_the_rotation_on() -> None:
    key = _rotated()
    before_rotation = T0 - timedelta(days=1)  # the last use of it while it was current
    assert key.end_grace_if_quiet(None, T0 + timedelta(seconds=QUIET - 1)) is None
    for last in (None, before_rotation):
        change = key.end_grace_if_quiet(last, T0 + timedelta(seconds=QUIET))
        assert change is not None and change.data.model_dump()["last_used_at"] is None


def test_it_never_ends_after_the_grace_period_nor_twice_nor_without_being_asked() -> None:
    key = _rotated(grace=timedelta(seconds=QUIET + 60))
    assert key.end_grace_if_quiet(None, T0 + timedelta(seconds=QUIET + 60)) is None  # over
    at = T0 + timedelta(seconds=QUIET)
    change = key.end_grace_if_quiet(None, at)
    assert change is not None
    ended = evolve(key, _recorded(key, change, at))
    assert ended.end_grace_if_quiet(None, at + timedelta(seconds=1)) is None
    assert ended.grace_period_ends_at == at and ended.previous_secret_hash is None
    assert ended.end_grace_when_quiet_seconds is None and ended.secret_hash == b"new"
    assert _rotated(quiet=None).end_grace_if_quiet(None, T0 + timedelta(days=1)) is None
    revoked = dataclasses.replace(key, status="revoked")
    assert revoked.end_grace_if_quiet(None, at) is None


def test_a_rotation_that_asks_for_quiet_needs_a_grace_period() -> None:
    with pytest.raises(GraceRequired):
        _rotated(grace=timedelta(0)).rotate("ig_live_Qq11", b"x", None, T0, QUIET)


def test_only_accepted_uses_of_the_old_secret_count_as_its_last_use() -> None:
    at = T0 + timedelta(minutes=1)
    uses = [
        Use("k1", "acme", at, 200, "previous"),
        Use("k1", "acme", at + timedelta(seconds=5), 200, "current"),
        Use("k1", "acme", at + timedelta(seconds=9), 401, "previous"),
        Use("k2", "acme", at, 200, None),
    ]
    assert latest_uses(uses, previous_secret=True) == {("k1", "acme"): at}
    assert latest_uses(uses)[("k1", "acme")] == at + timedelta(seconds=5)


def test_the_library_refuses_an_old_secret_from_the_event_that_ends_its_grace() -> None:
    library = GatewayVerifier("http://keys", "gateway-key", "kafka:9092")
    key_id = str(uuid.uuid4())
    common = {"valid": True, "code": "valid", "key_id": key_id, "account_id": "acme"}
    far = time.monotonic() + 60
    for secret, which in (("ig_live_old", "previous"), ("ig_live_new", "current")):
        entry = _Entry(common | {"secret": which}, far, far)
        library._remember(_digest(secret), entry)
    assert library.verify_cached("ig_live_old") is not None
    library.on_event({"event_type": "KeyGracePeriodEnded", "key_id": key_id})
    old = library.verify_cached("ig_live_old")
    assert old is not None and old.code == "revoked"
    assert library.verify_cached("ig_live_new") is None  # asked again, still valid there


def test_the_library_serves_an_old_secret_no_longer_than_its_grace_period() -> None:
    ends = datetime.now(UTC) + timedelta(seconds=5)
    answer = {"code": "valid", "secret": "previous", "valid_until": ends.isoformat()}
    assert 4 < _valid_for(answer) <= 5
    assert _valid_for({"code": "valid", "secret": "current"}) == float("inf")
    past = answer | {"valid_until": (ends - timedelta(minutes=1)).isoformat()}
    assert _valid_for(past) == 0
