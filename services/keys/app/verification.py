"""Verification of a presented secret, answered from an in-process cache.

The cache is asked first, by the secret's keyed digest; format and checksum are checked
before any database lookup (no I/O for garbage), and only on a cache miss: every cached
entry was made for a secret that had passed them. A known secret
is cached for `ttl` seconds; an unknown one is remembered for `negative_ttl`, so it reaches
the database at most once per period. The answer's status is computed at request time
(an expired key or a rotated-out secret past its grace period is refused at once, cache
or not). Any change to a key drops its cached entries: at once in the process that made
it, and from `keys.events` in every other process.

A key that passes its status is then held to its networks and its limits (`admit`): the
order and what each answer means are in docs/limits.md.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from prometheus_client import Counter

from services.keys.adapters.crypto import SecretHasher
from services.keys.app.limit_book import LimitBook
from services.keys.app.limits import NO_LIMITS, Admission, KeyLimits
from services.keys.domain.secret import MAX_SECRET_LENGTH, is_well_formed

SECRET_LOOKUPS = Counter(
    "instagen_secret_lookups_total",
    "Presented secrets looked up in the database (cache misses of verification and of leak"
    " reports); a malformed secret is never looked up",
)
Code = Literal[
    "valid",
    "malformed",
    "not_found",
    "disabled",
    "revoked",
    "expired",
    "ip_not_allowed",
    "rate_limited",
    "budget_exhausted",
]


@dataclass(frozen=True, slots=True)
class KnownSecret:
    """What the lookup read model says about one secret hash."""

    key_id: uuid.UUID
    account_id: str
    environment: str
    scopes: tuple[str, ...]
    rate_limit_per_hour: int | None
    status: str
    expires_at: datetime | None
    valid_until: datetime | None
    """Set for a rotated-out secret: the end of its grace period."""
    canary: bool = False
    """A decoy: refused exactly as an unknown secret, and every use reported."""
    limits: KeyLimits = NO_LIMITS

    @property
    def previous(self) -> bool:
        """The secret a rotation replaced (still verifying while its grace period lasts)."""
        return self.valid_until is not None


@dataclass(frozen=True, slots=True)
class Verdict:
    code: Code
    known: KnownSecret | None = None
    admission: Admission | None = None
    """The limits' verdict, once the key got that far."""

    @property
    def valid(self) -> bool:
        return self.code == "valid"


def judge(known: KnownSecret, now: datetime) -> Code:
    if known.canary:
        return "not_found"  # whoever holds a canary learns nothing from the answer
    if known.status == "revoked":
        return "revoked"
    if known.status == "expired" or (known.expires_at is not None and known.expires_at <= now):
        return "expired"
    if known.valid_until is not None and known.valid_until <= now:
        return "revoked"  # a rotated-out secret after its grace period
    if known.status == "disabled":
        return "disabled"
    return "valid"


def admit(verdict: Verdict, book: LimitBook, source_ip: str | None, now: float) -> Verdict:
    """A valid key held to its networks, then to its limits (an in-memory lookup); a key
    refused for its status is not counted, nor is one refused for its network."""
    known = verdict.known
    if known is None or not verdict.valid:
        return verdict
    if not known.limits.network_allows(source_ip):
        return Verdict("ip_not_allowed", known)
    admission = book.admit(known.key_id, known.limits, now)
    return Verdict(admission.refused or "valid", known, admission)


Lookup = Callable[[bytes], Awaitable[KnownSecret | None]]


class _Malformed:
    """Not an access key (shape or checksum): never hashed into a lookup."""


_MALFORMED: Final = _Malformed()


class _Miss:
    """Neither malformed nor in the cache: only the database can tell."""


_MISS: Final = _Miss()


class Verifier:
    def __init__(
        self,
        hasher: SecretHasher,
        lookup: Lookup,
        ttl: float,
        negative_ttl: float,
        max_entries: int,
        enabled: bool = True,
        on_previous_secret: Callable[[KnownSecret], None] = lambda known: None,
    ) -> None:
        self._hasher = hasher
        self._lookup = lookup
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max = max_entries
        self.enabled = enabled
        self._on_previous_secret = on_previous_secret
        """Told of each presentation of a rotated-out secret in its grace period, so the
        grace can end once the old secret is quiet (app/grace.py)."""
        self._known: OrderedDict[bytes, tuple[float, KnownSecret]] = OrderedDict()
        self._unknown: OrderedDict[bytes, float] = OrderedDict()
        self._by_key: dict[uuid.UUID, set[bytes]] = {}
        self.lookups = 0

    async def verify(self, secret: str) -> Verdict:
        digest, found = self._peek(secret)
        if isinstance(found, _Miss):
            found = await self._look_up(digest, secret)
        return self._verdict(found)

    def cached(self, secret: str) -> Verdict | None:
        """The verdict when it needs no lookup (a malformed secret, or a cache hit, known
        or unknown); None when only `verify` can tell."""
        _, found = self._peek(secret)
        return None if isinstance(found, _Miss) else self._verdict(found)

    def _verdict(self, found: KnownSecret | _Malformed | None) -> Verdict:
        if isinstance(found, _Malformed):
            return Verdict("malformed")
        if found is None:
            return Verdict("not_found")
        now = datetime.now(UTC)
        if found.valid_until is not None and found.valid_until > now and not found.canary:
            self._on_previous_secret(found)
        return Verdict(judge(found, now), found)

    async def find(self, secret: str) -> KnownSecret | None:
        """The key of a well-formed secret, through the cache; a malformed one is never
        looked up (leak reports drop those before they get here)."""
        found = await self._resolve(secret)
        return None if isinstance(found, _Malformed) else found

    async def _resolve(self, secret: str) -> KnownSecret | _Malformed | None:
        digest, found = self._peek(secret)
        return await self._look_up(digest, secret) if isinstance(found, _Miss) else found

    def _peek(self, secret: str) -> tuple[bytes, KnownSecret | _Malformed | _Miss | None]:
        """The cache first: an entry (known or unknown) is only ever made for a secret
        that passed the format and checksum check, and the keyed digest names that
        secret, so a hit needs no check again. A miss is checked before any lookup."""
        if len(secret) > MAX_SECRET_LENGTH:
            return b"", _MALFORMED
        digest = self._hasher.digest(secret)
        if self.enabled:
            now = time.monotonic()
            hit = self._known.get(digest)
            if hit is not None and hit[0] > now:
                return digest, hit[1]
            missing_until = self._unknown.get(digest)
            if missing_until is not None and missing_until > now:
                return digest, None
        if not is_well_formed(secret):
            return digest, _MALFORMED
        return digest, _MISS

    async def _look_up(self, digest: bytes, secret: str) -> KnownSecret | None:
        """A well-formed secret the cache does not answer for, from the database."""
        now = time.monotonic()
        self.lookups += 1
        SECRET_LOOKUPS.inc()
        known = await self._lookup(digest)
        if self.enabled:
            self._remember(digest, known, now)
        return known

    def _remember(self, digest: bytes, known: KnownSecret | None, now: float) -> None:
        if known is None:
            self._unknown[digest] = now + self._negative_ttl
            if len(self._unknown) > self._max:
                self._unknown.popitem(last=False)
            return
        self._known[digest] = (now + self._ttl, known)
        self._known.move_to_end(digest)
        self._by_key.setdefault(known.key_id, set()).add(digest)
        if len(self._known) > self._max:
            old_digest, (_, old) = self._known.popitem(last=False)
            self._by_key.get(old.key_id, set()).discard(old_digest)

    def invalidate(self, key_id: uuid.UUID) -> None:
        """Forget every cached answer about `key_id` (it changed)."""
        for digest in self._by_key.pop(key_id, ()):
            self._known.pop(digest, None)
