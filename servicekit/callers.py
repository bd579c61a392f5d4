"""Who is calling a service's HTTP API: the bearer access key, as the keys service sees it.

The services other than keys never read the keys database (STYLE.md rule 2): they ask the
keys service's `GET /v1/whoami` and keep the answer briefly. Answers are cached under a
SHA-256 of the bearer token, never the token itself; a refusal (401) is cached too, for a
shorter time, so a client retrying a bad key does not turn into a request per retry.

A cached caller must not outlive a change of its key (disabled, revoked, re-scoped): a
service that reads `keys.events` calls `forget_key` for each event it reads (or uses
`key_change_subscription`, which reads them all), and the key's cached answers are dropped.
A lookup still in flight when its key changes answers its own request but is not cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from contracts import EVENT_TYPE_HEADER, KEYS_EVENTS, Event
from servicekit.consumer import Received, Subscription
from servicekit.errors import ApiError
from servicekit.logging import get_logger
from servicekit.metrics import CALLER_LOOKUPS

log = get_logger(__name__)
MAX_TOKEN_LENGTH: Final = 512
_CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the key it presented and what that key may do."""

    key_id: uuid.UUID
    account_id: str
    environment: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ApiError(403, "insufficient_scope", f"This key lacks the scope {scope}.")


@dataclass(slots=True)
class _Entry:
    caller: Caller | None  # None: the keys service refused the token
    expires: float


@dataclass(slots=True)
class _Lookup:
    """A question to the keys service in flight, shared by concurrent identical requests."""

    task: asyncio.Task[Caller | None]
    forgotten: set[str] = field(default_factory=set)


class CallerDirectory:
    def __init__(
        self,
        keys_url: str,
        *,
        ttl: float = 30.0,
        refusal_ttl: float = 5.0,
        max_entries: int = 10_000,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys_url = keys_url.rstrip("/")
        self._ttl = ttl
        self._refusal_ttl = refusal_ttl
        self._max_entries = max_entries
        self._timeout = timeout
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._cache: dict[bytes, _Entry] = {}
        self._by_key: dict[str, set[bytes]] = {}
        """Cache entries by key id (as text, the form the message keys of keys.events have)."""
        self._pending: dict[bytes, _Lookup] = {}

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self._keys_url, timeout=self._timeout, transport=self._transport
        )

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def authenticate(self, authorization: str | None, scope: str | None = None) -> Caller:
        """The caller behind an `Authorization` header; 401, 403 or 503 as an `ApiError`."""
        kind, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if (
            kind.lower() != "bearer"
            or not token
            or len(token) > MAX_TOKEN_LENGTH
            # No key has other characters, and they could not be forwarded to the keys
            # service in a header (that failed with a 500).
            or not (token.isascii() and token.isprintable())
        ):
            raise ApiError(
                401,
                "unauthenticated",
                "Send an access key as 'Authorization: Bearer <key>'.",
                _CHALLENGE,
            )
        caller = await self._resolve(token)
        if caller is None:
            raise ApiError(401, "unauthenticated", "The access key is not accepted.", _CHALLENGE)
        if scope is not None:
            caller.require(scope)
        return caller

    def forget_key(self, key_id: uuid.UUID | str) -> None:
        """The key changed: its cached answers go, and answers in flight are not kept."""
        key = str(key_id)
        for digest in self._by_key.pop(key, ()):
            self._cache.pop(digest, None)
        for lookup in self._pending.values():
            lookup.forgotten.add(key)

    def forget_refusals(self) -> None:
        """A key became usable again (enabled): refused tokens may be accepted now."""
        for digest in [d for d, entry in self._cache.items() if entry.caller is None]:
            del self._cache[digest]

    # --- internals ------------------------------------------------------------------
    async def _resolve(self, token: str) -> Caller | None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        entry = self._cache.get(digest)
        if entry is not None and entry.expires > self._clock():
            CALLER_LOOKUPS.labels("cached").inc()
            return entry.caller
        lookup = self._pending.get(digest)
        if lookup is None:
            lookup = _Lookup(asyncio.create_task(self._ask(token)))
            self._pending[digest] = lookup
            lookup.task.add_done_callback(lambda _: self._settle(digest, lookup))
        # Shielded: one caller giving up (a client disconnect) must not fail the others.
        return await asyncio.shield(lookup.task)

    def _settle(self, digest: bytes, lookup: _Lookup) -> None:
        self._pending.pop(digest, None)
        if lookup.task.cancelled() or lookup.task.exception() is not None:
            return
        caller = lookup.task.result()
        if caller is not None and str(caller.key_id) in lookup.forgotten:
            return  # the key changed while we asked: the answer may be stale already
        self._store(digest, caller)

    def _store(self, digest: bytes, caller: Caller | None) -> None:
        self._drop(digest)
        while len(self._cache) >= self._max_entries:
            self._drop(next(iter(self._cache)))  # the oldest answer goes first
        ttl = self._ttl if caller is not None else self._refusal_ttl
        self._cache[digest] = _Entry(caller, self._clock() + ttl)
        if caller is not None:
            self._by_key.setdefault(str(caller.key_id), set()).add(digest)

    def _drop(self, digest: bytes) -> None:
        entry = self._cache.pop(digest, None)
        if entry is not None and entry.caller is not None:
            key = str(entry.caller.key_id)
            digests = self._by_key.get(key)
            if digests is not None:
                digests.discard(digest)
                if not digests:
                    del self._by_key[key]

    async def _ask(self, token: str) -> Caller | None:
        if self._client is None:
            raise RuntimeError("the caller directory is not started")
        try:
            response = await self._client.get(
                "/v1/whoami", headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            CALLER_LOOKUPS.labels("unavailable").inc()
            log.warning("keys_service_unreachable", error=type(exc).__name__)
            raise _unavailable() from None
        if response.status_code == 401:
            CALLER_LOOKUPS.labels("refused").inc()
            return None
        if response.status_code != 200:
            CALLER_LOOKUPS.labels("unavailable").inc()
            log.warning("keys_service_whoami_failed", status=response.status_code)
            raise _unavailable()
        CALLER_LOOKUPS.labels("asked").inc()
        return _caller(response.json())


def _unavailable() -> ApiError:
    return ApiError(
        503, "unavailable", "The access key could not be checked just now; try again shortly."
    )


def _caller(body: Any) -> Caller:
    try:
        return Caller(
            key_id=uuid.UUID(str(body["key_id"])),
            account_id=str(body["account_id"]),
            environment=str(body["environment"]),
            scopes=frozenset(str(scope) for scope in body["scopes"]),
        )
    except (KeyError, TypeError, ValueError):
        log.warning("keys_service_whoami_unreadable")
        raise _unavailable() from None


def _unread(raw: bytes) -> bytes:
    return raw  # the key id is the message key, the type a header: the body stays unread


def key_change_subscription(directory: CallerDirectory) -> Subscription[bytes]:
    """Every process reads every key event (no consumer group) from the moment it starts:
    for a service whose own consumer of keys.events (if any) reads only its share of the
    partitions and must still forget every changed key at once.

    The key id is the message key and the event type a header (INTERFACE.md), so this
    listener never parses an event: it costs next to nothing per message.
    """

    async def forget(batch: list[Received[bytes]]) -> None:
        enabled = False
        for item in batch:
            if item.record.key:
                directory.forget_key(item.record.key.decode("utf-8", "replace"))
            enabled = enabled or (EVENT_TYPE_HEADER, b"KeyEnabled") in (item.record.headers or ())
        if enabled:
            directory.forget_refusals()

    return Subscription(
        topic=KEYS_EVENTS,
        group_id=None,
        decode=_unread,
        handle=forget,
        payload=Event,
        description="Key changes: the cached callers of a changed key are forgotten.",
        max_records=5000,
        auto_offset_reset="latest",
        title=f"{KEYS_EVENTS}:forget-cached-callers",
    )
