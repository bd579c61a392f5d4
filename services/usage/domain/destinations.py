"""Where a webhook may send: no request forgery into the platform's own network.

A URL is judged twice: at creation (its scheme, and the addresses its host has then)
and at each delivery, on the address the request is then sent to (a name can change
its addresses after creation: DNS rebinding). Private, loopback, link-local (cloud
metadata at 169.254.169.254), shared, reserved and multicast addresses are refused,
also when written inside IPv6 (IPv4-mapped, 6to4, Teredo, NAT64), unless the setting
that allows private addresses is on (tests run receivers on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH: Final = 2000
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


class UnsafeDestination(ValueError):
    """The URL or address is not one a webhook may send to; the message says why."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    """Name or address, without IPv6 brackets."""
    port: int
    target: str
    """Path and query, as sent."""


def parse_url(url: str, allow_http: bool) -> Destination:
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeDestination(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise UnsafeDestination("The URL holds spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeDestination("The URL cannot be read.") from exc
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        raise UnsafeDestination(f"The URL must start with {' or '.join(allowed)}://.")
    if not parts.hostname:
        raise UnsafeDestination("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeDestination("The URL must not hold a user name or password.")
    if parts.fragment:
        raise UnsafeDestination("The URL must not have a fragment (#...).")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if parts.scheme == "https" else 80
    return Destination(parts.scheme, parts.hostname, port or default, target)


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_address(address: Address, allow_private: bool) -> None:
    """Raises UnsafeDestination unless a webhook may connect to `address`."""
    if address.is_unspecified or address.is_multicast:
        raise UnsafeDestination(f"{address} is not an address a receiver can have.")
    if allow_private:
        return
    for candidate in _meanings(address):
        if not candidate.is_global or candidate.is_multicast or candidate.is_unspecified:
            shown = str(address) if candidate == address else f"{address} ({candidate})"
            raise UnsafeDestination(
                f"The URL's host is {shown}, a {_category(candidate)} address; webhooks"
                " only go to public addresses."
            )


def _meanings(address: Address) -> list[Address]:
    """The address and the IPv4 addresses an IPv6 one carries."""
    found: list[Address] = []
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour]
        if address.teredo is not None:
            embedded.extend(address.teredo)
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        found.extend(a for a in embedded if a is not None)
    return [*found, address]  # the embedded first: their category is the telling one


def _category(address: Address) -> str:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    return "reserved or non-public"
