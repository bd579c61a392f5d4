"""Leaked keys without a broker: what a report does by the policy, GitHub's signatures,
canaries refused as unknown keys, and the alerts the usage service raises for both."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts import Actor, KeyReportedLeaked, KeyReportedLeakedData
from services.keys.adapters.crypto import SecretHasher
from services.keys.adapters.github_keys import GitHubKeys
from services.keys.app.verification import KnownSecret, Verifier
from services.keys.domain.key import AccessKey
from services.keys.domain.leaks import LeakPolicy
from services.keys.domain.secret import generate_secret
from services.usage.domain.alerts import to_alert
from services.usage.domain.detectors import DetectorConfig
from services.usage.domain.keys import KeyInfo
from services.usage.domain.lifecycle import canary_uses, key_reported_leaked
from services.usage.domain.requests import Request, network_of
from tests.support.github import Signer

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
POLICY = LeakPolicy()


def a_key(**changes: object) -> AccessKey:
    key = AccessKey(
        key_id=uuid.uuid4(), account_id="acme", name="CI", description=None,
        environment="production", scopes=(), rate_limit_per_hour=None, expires_at=None,
        prefix="ig_live_Ab3d", status="active", created_at=NOW, updated_at=NOW, version=1,
        secret_hash=None,
    )  # fmt: skip
    return dataclasses.replace(key, **changes)  # type: ignore[arg-type]


def reported(key: AccessKey) -> list[tuple[str, object]]:
    changes = key.report_leaked(
        "github", "https://x.test/a", POLICY.action_for(key.environment), NOW
    )
    return [(c.event_type, c.data.model_dump()) for c in changes]


def test_a_reported_production_key_is_quarantined_and_any_other_revoked() -> None:
    report = {"source": "github", "url": "https://x.test/a"}
    assert reported(a_key()) == [
        ("KeyReportedLeaked", report | {"action": "quarantined"}),
        ("KeyDisabled", {"reason": "reported_leaked"}),
    ]
    assert reported(a_key(environment="staging")) == [
        ("KeyReportedLeaked", report | {"action": "revoked"}),
        ("KeyRevoked", {"reason": "reported_leaked"}),
    ]


def test_a_key_reported_again_while_quarantined_or_revoked_changes_nothing() -> None:
    assert reported(a_key(status="disabled", disabled_reason="reported_leaked")) == []
    assert reported(a_key(status="revoked")) == []


def test_a_report_of_a_key_already_out_of_use_or_a_canary_is_recorded_without_action() -> None:
    for key in (
        a_key(status="disabled", disabled_reason="owner paused it"),
        a_key(expires_at=NOW - timedelta(seconds=1)),
        a_key(canary=True),
    ):
        assert [(t, d["action"]) for t, d in reported(key)] == [  # type: ignore[index]
            ("KeyReportedLeaked", "none")
        ]


def test_the_policy_setting_names_an_action_per_environment() -> None:
    policy = LeakPolicy.parse("production=quarantine, staging=quarantine, *=revoke")
    assert [policy.action_for(e) for e in ("production", "staging", "dev")] == [
        "quarantine",
        "quarantine",
        "revoke",
    ]
    assert LeakPolicy.parse("*=quarantine").action_for("anything") == "quarantine"
    with pytest.raises(ValueError, match=r"quarantine\|revoke"):
        LeakPolicy.parse("production=delete")


def test_only_a_signature_by_a_listed_github_key_over_the_exact_body_is_accepted() -> None:
    github, stranger = Signer.new("github-1"), Signer.new("github-1")
    keys = GitHubKeys.from_document(github.document())
    body = json.dumps([{"token": "x", "type": "instagen_key", "url": "u", "source": "content"}])
    signed = github.headers(body.encode())
    key_id, signature = (
        signed["Github-Public-Key-Identifier"],
        signed["Github-Public-Key-Signature"],
    )
    assert keys.verify(key_id, signature, body.encode())
    assert not keys.verify(key_id, signature, body.encode() + b" ")
    forged = stranger.headers(body.encode())["Github-Public-Key-Signature"]
    assert not keys.verify(key_id, forged, body.encode())
    assert not keys.verify("other-id", signature, body.encode())
    assert not keys.verify(key_id, "not base64!", body.encode())
    assert not keys.verify(None, None, body.encode())
    assert not GitHubKeys.load("", "").verify(key_id, signature, body.encode())


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ('{"keys": []}', "no public_keys list"),
        ("not json", "not JSON"),
        ('{"public_keys": [1]}', "needs a key_identifier"),
        ('{"public_keys": [{"key_identifier": "k"}]}', "needs a key_identifier"),
        ('{"public_keys": [{"key_identifier": "k", "key": "no PEM"}]}', "not a PEM key"),
    ],
)
def test_a_public_keys_document_of_another_shape_is_refused_at_start(
    document: str, reason: str
) -> None:
    """Always a ValueError saying what is wrong: the settings turn it into one line."""
    with pytest.raises(ValueError, match=reason):
        GitHubKeys.from_document(document)


def test_an_unreadable_public_keys_file_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        GitHubKeys.load("", str(tmp_path / "missing.json"))


def _verifier(known: dict[bytes, KnownSecret]) -> Verifier:
    async def lookup(digest: bytes) -> KnownSecret | None:
        return known.get(digest)

    return Verifier(SecretHasher(b"p" * 32), lookup, ttl=30, negative_ttl=5, max_entries=1000)


async def test_a_canary_is_refused_exactly_as_an_unknown_key() -> None:
    canary, unknown = generate_secret("production"), generate_secret("production")
    hasher = SecretHasher(b"p" * 32)
    known = KnownSecret(
        uuid.uuid4(), "acme", "production", (), None, "active", None, None, canary=True
    )
    verifier = _verifier({hasher.digest(canary.plaintext): known})
    as_canary = await verifier.verify(canary.plaintext)
    as_unknown = await verifier.verify(unknown.plaintext)
    assert (as_canary.code, as_canary.valid) == (as_unknown.code, as_unknown.valid)
    assert as_canary.known is known  # kept, so the attempt is reported


async def test_a_malformed_candidate_is_never_looked_up() -> None:
    verifier = _verifier({})
    well_formed = generate_secret("staging").plaintext
    other_last = "1" if well_formed.endswith("0") else "0"  # its checksum then fails
    for text in ("", "ig_live_" + "x" * 36, well_formed[:-1] + other_last, "a" * 5000):
        assert await verifier.find(text) is None
    assert verifier.lookups == 0
    await verifier.find(well_formed)
    assert verifier.lookups == 1


def _canary_key() -> KeyInfo:
    return KeyInfo(str(uuid.uuid4()), "acme", "decoy", "production", None, "active", 0.0,
                   "active", 0.0, None, 1, canary=True)  # fmt: skip


def _attempt(key: KeyInfo, at: float, ip: str) -> Request:
    return Request(str(uuid.uuid4()), key.key_id, "acme", at, int(at // 60), network_of(ip),
                   401, 0, 0, 0.0, "curl/8.5", "/v1/generate")  # fmt: skip


def test_canary_attempts_raise_one_critical_alert_per_source_network_per_cooldown() -> None:
    key, t0 = _canary_key(), 1_800_000_000.0
    attempts = [
        _attempt(key, t0, "198.51.100.7"),
        _attempt(key, t0 + 5, "198.51.100.9"),  # the same /24
        _attempt(key, t0 + 10, "203.0.113.5"),
    ]
    findings = canary_uses(attempts, {key.key_id: key}.get, DetectorConfig())
    alerts = {a.alert_id: a for a in (to_alert(f, key.name, NOW) for f in findings)}
    assert sorted(a.evidence["network"] for a in alerts.values()) == [  # type: ignore[type-var]
        "198.51.100.0/24",
        "203.0.113.0/24",
    ]
    alert = next(iter(alerts.values()))
    assert (alert.kind, alert.severity) == ("canary_key_used", "critical")
    assert alert.evidence["user_agent"] == "curl/8.5"
    assert alert.evidence["endpoint"] == "/v1/generate"
    other = dataclasses.replace(key, canary=False)
    assert canary_uses(attempts, {key.key_id: other}.get, DetectorConfig()) == []


def test_a_leak_report_is_a_critical_alert_naming_its_source() -> None:
    event = KeyReportedLeaked(
        event_id=uuid.uuid4(), key_id=uuid.uuid4(), account_id="acme", stream_version=2,
        position=9, occurred_at=NOW, actor=Actor(type="service", id="github-secret-scanning"),
        data=KeyReportedLeakedData(source="github", url="https://x.test/a", action="quarantined"),
    )  # fmt: skip
    alert = to_alert(key_reported_leaked(event), "CI", NOW)
    assert (alert.kind, alert.severity) == ("key_reported_leaked", "critical")
    assert alert.evidence["source"] == "github"
    assert alert.evidence["reported_by"] == "github-secret-scanning"
    assert "rotate and enable" in alert.summary
