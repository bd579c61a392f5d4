"""The audit and usage services, as the console reads them: their public HTTP APIs, called
with the signed-in person's own access key (so those services apply their own access
rules), never with a privileged credential of the key service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx

TIMEOUT = httpx.Timeout(5.0, connect=2.0)


class BackendError(Exception):
    """A service the console reads from did not give an answer it can show."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Backends:
    def __init__(self, audit_url: str, usage_url: str) -> None:
        self.audit_url = audit_url.rstrip("/")
        self.usage_url = usage_url.rstrip("/")
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _send(
        self, service: str, url: str, access_key: str, params: dict[str, Any], stream: bool
    ) -> httpx.Response:
        """GET with the person's key; what is not a 200 becomes a BackendError."""
        request = self._http().build_request(
            "GET", url, params=_query(params), headers={"Authorization": f"Bearer {access_key}"}
        )
        try:
            response = await self._http().send(request, stream=stream)
        except httpx.HTTPError as error:
            raise BackendError(
                f"The {service} service did not answer ({type(error).__name__})."
            ) from None
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            raise BackendError(
                f"The {service} service answered: {_message(response)}", response.status_code
            )
        return response

    async def _get(
        self, service: str, url: str, access_key: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        response = await self._send(service, url, access_key, params, stream=False)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise BackendError(
                f"The {service} service answered with a body the console cannot read."
            )
        return body

    async def audit_events(self, access_key: str, **filters: Any) -> dict[str, Any]:
        return await self._get("audit", f"{self.audit_url}/v1/audit/events", access_key, filters)

    async def open_export(self, access_key: str, output: str, **filters: Any) -> httpx.Response:
        """The audit service's export (csv or jsonl), to stream through without buffering;
        the caller closes it."""
        url, query = f"{self.audit_url}/v1/audit/events", {**filters, "format": output}
        return await self._send("audit", url, access_key, query, stream=True)

    async def key_usage(
        self, access_key: str, key_id: uuid.UUID, start: datetime, end: datetime, granularity: str
    ) -> dict[str, Any]:
        return await self._get(
            "usage",
            f"{self.usage_url}/v1/usage/keys/{key_id}",
            access_key,
            {"from": start, "to": end, "granularity": granularity, "limit": 1000},
        )

    async def alerts(self, access_key: str, **filters: Any) -> dict[str, Any]:
        return await self._get("usage", f"{self.usage_url}/v1/alerts", access_key, filters)

    async def webhooks(self, access_key: str) -> dict[str, Any]:
        return await self._get("usage", f"{self.usage_url}/v1/webhooks", access_key, {})

    async def webhook_deliveries(self, access_key: str, webhook_id: uuid.UUID) -> dict[str, Any]:
        url = f"{self.usage_url}/v1/webhooks/{webhook_id}/deliveries"
        return await self._get("usage", url, access_key, {"limit": 100})

    async def create_webhook(self, access_key: str, settings: dict[str, Any]) -> dict[str, Any]:
        """The created webhook (its secret in it, shown once); BackendError (with the
        usage service's message, e.g. why a URL is refused) otherwise."""
        response = await self._change("POST", "/v1/webhooks", access_key, settings, 201)
        body: dict[str, Any] = response.json()
        return body

    async def enable_webhook(self, access_key: str, webhook_id: uuid.UUID) -> None:
        """Sends to the disabled webhook again; BackendError with the usage service's
        message (e.g. that its URL may no longer be used) otherwise."""
        await self._change("POST", f"/v1/webhooks/{webhook_id}/enable", access_key, None, 200)

    async def delete_webhook(self, access_key: str, webhook_id: uuid.UUID) -> None:
        await self._change("DELETE", f"/v1/webhooks/{webhook_id}", access_key, None, 204)

    async def _change(
        self, method: str, path: str, access_key: str, body: dict[str, Any] | None, ok: int
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {access_key}"}
        try:
            response = await self._http().request(
                method, f"{self.usage_url}{path}", json=body, headers=headers
            )
        except httpx.HTTPError as error:
            raise BackendError(
                f"The usage service did not answer ({type(error).__name__})."
            ) from None
        if response.status_code != ok:
            raise BackendError(_error_text(response), response.status_code)
        return response


def _query(params: dict[str, Any]) -> dict[str, Any]:
    """The query string's values: times in ISO 8601, filters not set left out."""
    return {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in params.items()
        if v not in (None, "")
    }


def _error_text(response: httpx.Response) -> str:
    """The refusal's own message (for a person), else the status."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"The usage service answered {response.status_code}."


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        return f"{response.status_code} {error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        return f"{response.status_code}"
