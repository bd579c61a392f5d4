"""The sender judges the address a name has at the moment of sending (DNS rebinding),
connects to that very address, and follows no redirect. `localhost` stands for a name
that resolves to a loopback address (from /etc/hosts, no DNS server needed)."""

from __future__ import annotations

import httpx

from services.usage.adapters.webhook_sender import post
from tests.support.webhooks import receiver


async def test_a_name_resolving_to_loopback_is_refused_at_delivery_without_connecting() -> None:
    with receiver() as hook:
        url = hook.url.replace("127.0.0.1", "localhost")
        async with httpx.AsyncClient(trust_env=False) as client:
            outcome = await post(
                client, url, b"{}", {}, allow_http=True, allow_private=False
            )  # fmt: skip
        assert not outcome.delivered and outcome.status_code is None
        assert "loopback" in (outcome.error or "")
        assert hook.taken() == []


async def test_the_request_goes_to_the_checked_address_with_the_name_as_host() -> None:
    with receiver() as hook:
        url = hook.url.replace("127.0.0.1", "localhost")
        port = url.split(":")[2].split("/")[0]
        async with httpx.AsyncClient(trust_env=False) as client:
            outcome = await post(
                client, url, b'{"a": 1}', {"X-Test": "1"}, allow_http=True, allow_private=True
            )  # fmt: skip
        assert outcome.delivered and outcome.status_code == 200
        (delivered,) = hook.taken()
        assert delivered.headers["host"] == f"localhost:{port}"
        assert delivered.body == b'{"a": 1}' and delivered.headers["x-test"] == "1"


async def test_a_redirect_is_a_failed_delivery_and_is_not_followed() -> None:
    with receiver() as hook:
        hook.answer(302)
        async with httpx.AsyncClient(trust_env=False) as client:
            outcome = await post(client, hook.url, b"{}", {}, allow_http=True, allow_private=True)
        assert not outcome.delivered and outcome.status_code == 302
        assert outcome.error == "HTTP 302 (redirects are not followed)"
        assert len(hook.taken()) == 1


async def test_http_is_refused_at_delivery_when_the_setting_is_off() -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        outcome = await post(
            client, "http://93.184.216.34/h", b"{}", {}, allow_http=False, allow_private=False
        )  # fmt: skip
    assert not outcome.delivered and "https://" in (outcome.error or "")
