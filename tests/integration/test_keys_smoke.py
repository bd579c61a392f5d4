"""The product page's first promise: create a key with a name, see it at once, and it works."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.stack


async def test_a_new_key_is_shown_once_created_and_verifies(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/v1/keys", json={"name": "Production-LLM-API", "description": "Web app"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"].startswith(body["prefix"])
    assert body["status"] == "active"
    verdict = await api.post("/v1/verify", json={"key": body["key"]})
    assert verdict.json()["valid"] is True
    assert verdict.json()["key_id"] == body["id"]
