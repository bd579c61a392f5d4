"""``Verifier``: the key service's verification, answered in the gateway's own process.

A key seen once is answered from memory. Every change to it reaches the cache through
``keys.events`` (a disable or revoke refuses the key at once; any change makes the next
request ask the key service again) and every limit state through ``usage.limits``, the
same two topics a keys instance reads. A miss asks ``POST /v1/verify``. If the key service
cannot be reached, what is known keeps being answered for ``stale_for`` seconds past its
freshness, then the verifier fails closed (``unavailable``, HTTP 503).

The verifier is ready (``await start()`` returns) only once it holds its place on
``keys.events`` and has read ``usage.limits`` to its end, so no change published after
that can pass it by.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import httpx
from aiokafka import AIOKafkaConsumer

from instagen_gateway.limits import LimitBook, format_time
from instagen_gateway.secret import is_well_formed
from instagen_gateway.verdict import Verdict

log = logging.getLogger("instagen_gateway")

KEYS_EVENTS: Final = "keys.events"
USAGE_LIMITS: Final = "usage.limits"
REFUSING_EVENTS: Final[dict[str, str]] = {
    "KeyDisabled": "disabled",
    "KeyRevoked": "revoked",
    "KeyExpired": "expired",
}
"""Events after which a key is refused at once, before the key service is asked again."""
OLD_SECRET_ENDING_EVENTS: Final = frozenset({"KeyGracePeriodEnded"})
"""Events after which a rotated-out secret (an answer with ``secret: previous``) is refused
at once: its grace period ended early (its clients had moved to the new secret)."""
_LIMIT_CODES: Final = ("rate_limited", "budget_exhausted")
"""Refusals the key service decides from usage.limits: cached no longer than their window."""


class Unavailable(Exception):
    """The key service did not answer (network, timeout, 5xx)."""


@dataclass(slots=True)
class _Entry:
    answer: dict[str, Any]
    fresh_until: float
    usable_until: float
    refused_as: str | None = None
    """Set by an event (disabled, revoked, expired) until the key service is asked again."""
    asked_for: str | None = None
    """The client address the key service was asked about."""
    configured: dict[str, int] = field(default_factory=dict)
    """The key's limits as the key service listed them ({name: limit})."""
    plain: Verdict | None = None
    """The answer itself, for a valid key with neither limits nor networks: nothing to
    decide per request."""


class Verifier:
    """Verify presented keys for a gateway; see the module docstring for the rules."""

    def __init__(
        self,
        keys_url: str,
        verifier_key: str,
        kafka_bootstrap_servers: str,
        *,
        ttl: float = 60.0,
        negative_ttl: float = 5.0,
        stale_for: float = 30.0,
        max_entries: int = 100_000,
        timeout: float = 2.0,
    ) -> None:
        self._keys_url = keys_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {verifier_key}"}
        self._bootstrap = kafka_bootstrap_servers
        self.ttl, self.negative_ttl, self.stale_for = ttl, negative_ttl, stale_for
        self._max = max_entries
        self._timeout = timeout
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._by_key: dict[str, set[bytes]] = {}
        self.limits = LimitBook()
        self.lookups = 0
        """Requests sent to the key service (misses and refreshes)."""
        self._http: httpx.AsyncClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None

    # --- life cycle ---------------------------------------------------------------------------
    async def start(self, timeout: float = 60.0) -> None:
        """Connect, take a place on both topics and read the limit states to their end."""
        self._http = httpx.AsyncClient(
            base_url=self._keys_url, headers=self._headers, timeout=self._timeout
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id="instagen-gateway-verifier",
        )
        await consumer.start()
        self._consumer = consumer
        try:
            await asyncio.wait_for(self._position(consumer), timeout)
        except BaseException:
            await self.stop()
            raise

    async def _position(self, consumer: AIOKafkaConsumer) -> None:
        consumer.subscribe(topics=[KEYS_EVENTS, USAGE_LIMITS])  # no group: every partition
        while {tp.topic for tp in consumer.assignment()} != {KEYS_EVENTS, USAGE_LIMITS}:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # aiokafka has no public event for a group-less assignment
        events = [tp for tp in consumer.assignment() if tp.topic == KEYS_EVENTS]
        limits = [tp for tp in consumer.assignment() if tp.topic == USAGE_LIMITS]
        await consumer.seek_to_end(*events)
        for tp in events:
            await consumer.position(tp)  # fixed now: nothing published from here is skipped
        await consumer.seek_to_beginning(*limits)
        ends = await consumer.end_offsets(limits)
        self._reader = asyncio.create_task(self._read(consumer))
        for tp, end in ends.items():
            while await consumer.position(tp) < end:  # noqa: ASYNC110 - read by _read
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._consumer is not None:
            await self._consumer.stop()
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> Verifier:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the decision -------------------------------------------------------------------------
    async def verify(
        self,
        secret: str,
        *,
        source_ip: str | None = None,
        user_agent: str | None = None,
        endpoint: str | None = None,
        model: str | None = None,
    ) -> Verdict:
        """The decision for one request presenting ``secret``; counts it if let in."""
        known = self.verify_cached(secret, source_ip)
        if known is not None:
            return known
        if not is_well_formed(secret):
            return Verdict("malformed")
        entry = await self._entry(secret, source_ip, user_agent, endpoint, model)
        if entry is None:
            return Verdict("unavailable")
        return self._judge(entry, source_ip)

    def verify_cached(self, secret: str, source_ip: str | None = None) -> Verdict | None:
        """The decision from memory alone (counted if let in), or None when the key service
        must be asked: the hot path, with no I/O and no await."""
        entry = self._entries.get(_digest(secret))
        if entry is None:
            return None
        if entry.refused_as is not None:  # known refused: no need to ask
            return _base_verdict(entry.answer, entry.refused_as)
        if entry.fresh_until <= time.monotonic() or not _holds_for(entry, source_ip):
            return None
        if entry.plain is not None:
            return entry.plain
        return self._judge(entry, source_ip)

    def _judge(self, entry: _Entry, source_ip: str | None) -> Verdict:
        answer = entry.answer
        code = entry.refused_as or answer["code"]
        base = _base_verdict(answer, code)
        if code != "valid":
            return base
        networks = answer.get("allowed_cidrs")
        if networks and not _network_allows(networks, source_ip):
            return _base_verdict(answer, "ip_not_allowed")
        key_id = str(answer["key_id"])
        decision = self.limits.decide(key_id, entry.configured)
        if decision.refused is not None:
            now = time.time()
            reset = decision.reset_at or now
            retry = max(1, math.ceil(reset - now))
            return Verdict(
                decision.refused,
                base.key_id,
                base.account_id,
                base.environment,
                base.scopes,
                retry_after_seconds=retry,
                reset_at=format_time(reset),
            )
        self.limits.admit(key_id, entry.configured)
        return Verdict(
            "valid",
            base.key_id,
            base.account_id,
            base.environment,
            base.scopes,
            decision.limits,
            secret=base.secret,
        )

    async def _entry(
        self,
        secret: str,
        source_ip: str | None,
        user_agent: str | None,
        endpoint: str | None,
        model: str | None,
    ) -> _Entry | None:
        digest = _digest(secret)
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is not None and entry.fresh_until > now and _holds_for(entry, source_ip):
            return entry
        try:
            answer = await self._ask(secret, source_ip, user_agent, endpoint, model)
        except Unavailable:
            if entry is not None and entry.usable_until > now and _holds_for(entry, source_ip):
                return entry
            return None
        known = bool(answer.get("key_id"))
        fresh_for = self.ttl if known else self.negative_ttl
        if answer["code"] in _LIMIT_CODES:  # asked again when the window ends, if sooner
            fresh_for = min(self.negative_ttl, float(answer.get("retry_after_seconds") or 0))
        valid_for = _valid_for(answer)  # a rotated-out secret: not past its grace end
        configured = {k: int(v["limit"]) for k, v in (answer.get("limits") or {}).items()}
        fresh = _Entry(
            answer,
            now + min(fresh_for, valid_for),
            now + min(fresh_for + self.stale_for, valid_for),
            asked_for=source_ip,
            configured=configured,
            plain=_base_verdict(answer, "valid")
            if answer["code"] == "valid" and not configured and not answer.get("allowed_cidrs")
            else None,
        )
        self._remember(digest, fresh)
        return fresh

    async def _ask(
        self,
        secret: str,
        source_ip: str | None,
        user_agent: str | None,
        endpoint: str | None,
        model: str | None,
    ) -> dict[str, Any]:
        if self._http is None:
            raise RuntimeError("Verifier.start() was not awaited")
        body = {"key": secret, "source_ip": source_ip, "user_agent": user_agent}
        body |= {"endpoint": endpoint, "model": model}
        self.lookups += 1
        try:
            response = await self._http.post(
                "/v1/verify", json={k: v for k, v in body.items() if v is not None}
            )
        except httpx.HTTPError as exc:
            raise Unavailable(type(exc).__name__) from None
        if response.status_code != 200:
            # 401/403: this gateway's own key is refused; 5xx: the service is in trouble.
            log.warning("verify answered %s", response.status_code)
            raise Unavailable(str(response.status_code))
        answer: dict[str, Any] = response.json()
        return answer

    def _remember(self, digest: bytes, entry: _Entry) -> None:
        self._entries[digest] = entry
        self._entries.move_to_end(digest)
        key_id = entry.answer.get("key_id")
        if key_id:
            self._by_key.setdefault(str(key_id), set()).add(digest)
        while len(self._entries) > self._max:
            old_digest, old = self._entries.popitem(last=False)
            old_key = old.answer.get("key_id")
            if old_key:
                self._by_key.get(str(old_key), set()).discard(old_digest)

    # --- the topics ---------------------------------------------------------------------------
    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, records in batches.items():
                for record in records:
                    try:
                        message = json.loads(record.value)
                        if tp.topic == KEYS_EVENTS:
                            self.on_event(message)
                        else:
                            self.limits.apply(message)
                    except (ValueError, KeyError, TypeError):
                        log.warning("unreadable message on %s at %s", tp.topic, record.offset)

    def on_event(self, event: dict[str, Any]) -> None:
        """Apply one ``keys.events`` event to the cached answers of its key."""
        digests = self._by_key.get(str(event["key_id"]))
        if not digests:
            return
        event_type = str(event.get("event_type"))
        refused_as = REFUSING_EVENTS.get(event_type)
        for digest in digests:
            entry = self._entries.get(digest)
            if entry is None:
                continue
            entry.fresh_until = 0.0  # ask again on the next request
            if refused_as is not None:
                entry.refused_as = refused_as
            elif (
                event_type in OLD_SECRET_ENDING_EVENTS and entry.answer.get("secret") == "previous"
            ):
                entry.refused_as = "revoked"  # the old secret's grace period is over
                entry.usable_until = 0.0
            elif event.get("event_type") == "KeyEnabled":
                entry.refused_as = None


def _digest(secret: str) -> bytes:
    """What the cache is keyed by: never the secret itself."""
    return hashlib.blake2b(secret.encode(), digest_size=16).digest()


def _base_verdict(answer: dict[str, Any], code: str) -> Verdict:
    return Verdict(
        code,
        answer.get("key_id"),
        answer.get("account_id"),
        answer.get("environment"),
        tuple(answer.get("scopes") or ()),
        retry_after_seconds=answer.get("retry_after_seconds"),
        reset_at=answer.get("reset_at"),
        secret=answer.get("secret"),
    )


def _previous(entry: _Entry) -> bool:
    """The answer was about a rotated-out secret (in its grace period then)."""
    return entry.answer.get("secret") == "previous"


def _valid_for(answer: dict[str, Any]) -> float:
    """Seconds an answer may be served at most, fresh or stale: a rotated-out secret's
    (``valid_until``) not past the end of its grace period; others without end."""
    valid_until = answer.get("valid_until")
    if not valid_until:
        return math.inf
    return max(0.0, datetime.fromisoformat(str(valid_until)).timestamp() - time.time())


def _network_allows(networks: list[str], source_ip: str | None) -> bool:
    if source_ip is None:
        return False
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(n) for n in networks)


def _holds_for(entry: _Entry, source_ip: str | None) -> bool:
    """An answer holds for every address when it lists the key's networks (checked here);
    from a key service that does not list them, only for the address it was asked about."""
    return "allowed_cidrs" in entry.answer or entry.asked_for == source_ip
