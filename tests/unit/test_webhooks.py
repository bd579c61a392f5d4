"""Webhooks' pure rules: the signature (and the receivers' snippet in docs/webhooks.md
that checks it), the backoff, which alerts a webhook wants, and where it may send."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts import Alert, AlertWindow
from services.usage.domain.destinations import UnsafeDestination, check_address, parse_url
from services.usage.domain.webhooks import Backoff, disabled_alert, new_secret, signature, wants

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def receivers_check() -> Callable[..., bool]:
    """The Python snippet docs/webhooks.md gives receivers, run as they would run it."""
    (snippet,) = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    scope: dict[str, Any] = {}
    exec(snippet, scope)  # noqa: S102 - our own documentation
    check: Callable[..., bool] = scope["verify_instagen_signature"]
    return check


def test_the_signature_is_the_hmac_of_t_dot_body_in_the_pinned_header_form() -> None:
    body = b'{"alert_id": "x"}'
    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("whsec_k", 1700000000, body) == f"t=1700000000,v1={expected}"


def test_the_documented_receiver_check_accepts_a_fresh_delivery_and_refuses_the_rest() -> None:
    check = receivers_check()
    secret, body, now = new_secret(), b'{"kind": "volume_spike"}', int(time.time())
    assert check(secret, signature(secret, now, body), body)
    assert not check(secret, signature(secret, now, body), body + b" ")  # altered body
    assert not check(new_secret(), signature(secret, now, body), body)  # another secret
    assert not check(secret, signature(secret, now - 301, body), body)  # replayed later
    assert not check(secret, signature(secret, now + 301, body), body)
    assert check(secret, signature(secret, now - 299, body), body)
    assert not check(secret, "v1=abc", body) and not check(secret, "", body)
    assert not check(secret, f"t=-{now},v1=00", body)


def test_secrets_are_random_and_long() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(s.startswith("whsec_") and len(s) >= 6 + 43 for s in secrets)


def test_the_backoff_is_a_full_jitter_under_a_capped_exponential() -> None:
    backoff, rng = Backoff(base_seconds=5, cap_seconds=60), random.Random(7)  # noqa: S311 - jitter, not a secret
    for attempts, ceiling in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (40, 60), (10**6, 60)]:
        delays = [backoff.delay(attempts, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2  # spread out


def alert(kind: str = "volume_spike", severity: str = "warning") -> Alert:
    return Alert(
        alert_id=uuid.uuid4(), key_id=uuid.uuid4(), account_id="acme", kind=kind,
        severity=severity, detected_at=NOW, window=AlertWindow(from_=NOW, to=NOW),
        observed=1, expected=0, summary="s",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kinds", "min_severity", "sent", "wanted"),
    [
        ([], "info", alert(), True),
        ([], "critical", alert(), False),
        ([], "warning", alert(), True),
        (["volume_spike"], "info", alert(), True),
        (["disabled_key_in_use"], "info", alert(), False),
        (["disabled_key_in_use"], "critical", alert("disabled_key_in_use", "critical"), True),
    ],
)
def test_a_webhook_wants_its_kinds_at_or_above_its_severity(
    kinds: list[str], min_severity: str, sent: Alert, wanted: bool
) -> None:
    assert wants(kinds, min_severity, sent) is wanted


def test_a_disabled_webhook_is_one_alert_however_often_its_disabling_is_retried() -> None:
    webhook = uuid.uuid4()
    since = NOW - timedelta(hours=24)
    one = disabled_alert(webhook, "acme", "https://x.example:8443/h/t0k3n?a=b", since, NOW)
    again = disabled_alert(
        webhook, "acme", "https://x.example:8443/h/t0k3n", since, NOW + timedelta(1)
    )
    assert one.alert_id == again.alert_id
    assert (one.kind, one.severity, one.key_id) == ("webhook_disabled", "warning", webhook)
    # The origin only: a URL's path or query may be the receiver's own secret.
    assert one.evidence == {"webhook_id": str(webhook), "origin": "https://x.example:8443"}
    assert "t0k3n" not in one.model_dump_json()
    assert "24.0 h" in one.summary


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "224.0.0.1",  # noqa: S104 - refused, not bound "255.255.255.255", "192.0.2.1", "::1", "::",
        "fe80::1", "fc00::1", "fd12:3456::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
        "::ffff:10.0.0.1", "2002:7f00:0001::1", "64:ff9b::a9fe:a9fe", "ff02::1",
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(UnsafeDestination):
        check_address(ipaddress.ip_address(address), allow_private=False)


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    check_address(ipaddress.ip_address(address), allow_private=False)


def test_the_test_setting_allows_loopback_and_private_but_never_the_unspecified() -> None:
    for address in ("127.0.0.1", "10.1.2.3", "::1"):
        check_address(ipaddress.ip_address(address), allow_private=True)
    for address in ("0.0.0.0", "::", "224.0.0.1"):  # noqa: S104 - refused, not bound
        with pytest.raises(UnsafeDestination):
            check_address(ipaddress.ip_address(address), allow_private=True)


def test_a_mapped_address_is_named_by_what_it_carries() -> None:
    with pytest.raises(UnsafeDestination, match=r"\(169\.254\.169\.254\), a link-local"):
        check_address(ipaddress.ip_address("::ffff:169.254.169.254"), allow_private=False)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://example.com/h", "https://"),
        ("ftp://example.com/h", "https://"),
        ("https:///h", "no host"),
        ("https://user:pw@example.com/h", "user name"),
        ("https://example.com/h#frag", "fragment"),
        ("https://example.com:99999/h", "cannot be read"),
        ("https://exa mple.com/h", "spaces"),
        ("https://example.com/" + "a" * 2000, "longer"),
    ],
)
def test_urls_that_may_not_be_used_are_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(UnsafeDestination, match=says):
        parse_url(url, allow_http=False)


def test_a_url_is_read_into_where_it_sends() -> None:
    one = parse_url("https://hooks.example.com/in?x=1", allow_http=False)
    assert (one.scheme, one.host, one.port, one.target) == (
        "https", "hooks.example.com", 443, "/in?x=1"
    )  # fmt: skip
    two = parse_url("http://[::1]:8080", allow_http=True)
    assert (two.host, two.port, two.target) == ("::1", 8080, "/")
