"""Sends one signed delivery over HTTP, to an address checked just before connecting.

The host is resolved here and every address it has must be allowed
(domain.destinations); the request then goes to the first of them, the name kept in the
Host header and in TLS (SNI and certificate check), so what was checked is where the
bytes go: a name cannot answer one address to the check and another to the connection.
Redirects are not followed (a 3xx is a failed delivery) and the answer's body is not read.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import httpx

from services.usage.domain.destinations import (
    Address,
    Destination,
    UnsafeDestination,
    check_address,
    literal_address,
    parse_url,
)

USER_AGENT = "InstaGen-Webhooks/1"


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status_code: int | None
    error: str | None


async def resolve(host: str, port: int, timeout: float) -> list[Address]:
    """The addresses of `host` (itself if it is one); UnsafeDestination if there are none."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
        )
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise UnsafeDestination(f"The host {host[:100]} does not resolve.") from exc
    found = [literal_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    addresses = list(dict.fromkeys(a for a in found if a is not None))
    if not addresses:
        raise UnsafeDestination(f"The host {host[:100]} does not resolve.")
    return addresses


async def checked_destination(
    url: str, allow_http: bool, allow_private: bool, timeout: float
) -> tuple[Destination, Address]:
    """The URL's destination and the address to connect to, or UnsafeDestination."""
    destination = parse_url(url, allow_http)
    addresses = await resolve(destination.host, destination.port, timeout)
    for address in addresses:
        check_address(address, allow_private)
    return destination, addresses[0]


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_http: bool,
    allow_private: bool,
    resolve_timeout: float = 3.0,
) -> Outcome:
    try:
        destination, address = await checked_destination(
            url, allow_http, allow_private, resolve_timeout
        )
    except UnsafeDestination as exc:
        return Outcome(False, None, str(exc))
    host = f"[{address}]" if address.version == 6 else str(address)
    default_port = 443 if destination.scheme == "https" else 80
    name = destination.host if ":" not in destination.host else f"[{destination.host}]"
    request = client.build_request(
        "POST",
        f"{destination.scheme}://{host}:{destination.port}{destination.target}",
        content=body,
        headers={
            **headers,
            "Host": name if destination.port == default_port else f"{name}:{destination.port}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        },
        extensions={"sni_hostname": destination.host} if destination.scheme == "https" else {},
    )
    try:
        response = await client.send(request, stream=True, follow_redirects=False)
        await response.aclose()
    except httpx.TimeoutException:
        return Outcome(False, None, "timed out")
    except httpx.HTTPError as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {str(exc)[:200] or 'failed'}")
    if 200 <= response.status_code < 300:
        return Outcome(True, response.status_code, None)
    redirect = " (redirects are not followed)" if 300 <= response.status_code < 400 else ""
    return Outcome(False, response.status_code, f"HTTP {response.status_code}{redirect}")
