"""Console sessions: an opaque cookie token, a row per session, CSRF tokens bound to it.

The cookie holds 256 random bits; the database holds only their SHA-256, so a read of the
table gives nobody a usable session. The access key a person signed in with is sealed in
the row (the console calls the audit and usage services with it on their behalf) and is
checked again on every request, so disabling or revoking that key ends its sessions at
once. Sign-out deletes the row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.keys.adapters.crypto import SecretVault, VaultError, derive_key

SESSION_COOKIE = "instagen_console"
SIGN_IN_COOKIE = "instagen_console_signin"
SESSION_LIFETIME = timedelta(hours=8)


@dataclass(frozen=True)
class Session:
    session_id: uuid.UUID
    key_id: uuid.UUID
    account_id: str
    access_key: str
    token: str

    def __repr__(self) -> str:  # the access key stays out of any log or traceback
        return f"Session(session_id={self.session_id}, key_id={self.key_id})"


class ConsoleSecrets:
    """The console's key material, derived from the key service's master key."""

    def __init__(self, master_key: bytes) -> None:
        self._vault = SecretVault(derive_key(master_key, "instagen console session seal"))
        self._csrf = derive_key(master_key, "instagen console csrf")

    def seal(self, session_id: uuid.UUID, access_key: str) -> bytes:
        return self._vault.seal(session_id, access_key)

    def open(self, session_id: uuid.UUID, sealed: bytes) -> str | None:
        try:
            return self._vault.open(session_id, sealed)
        except VaultError:
            return None  # another master key: the session is simply no longer valid

    def csrf_token(self, binding: str) -> str:
        """The token a form of this session (or sign-in attempt) must send back."""
        return hmac.new(self._csrf, binding.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, binding: str | None, sent: str | None) -> bool:
        if not binding or not sent:
            return False
        return hmac.compare_digest(self.csrf_token(binding), sent)

    def __repr__(self) -> str:
        return "ConsoleSecrets(<redacted>)"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class SessionStore:
    def __init__(self, pool: Any, keys: ConsoleSecrets) -> None:
        self._pool = pool
        self._keys = keys

    async def open(self, key_id: uuid.UUID, account_id: str, access_key: str) -> str:
        """A new session for a verified key; returns the cookie's token."""
        token, session_id = new_token(), uuid.uuid4()
        now = datetime.now(UTC)
        async with self._pool().acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM console_sessions WHERE expires_at < $1", now)
            await conn.execute(
                "INSERT INTO console_sessions (session_id, token_hash, key_id, account_id,"
                " sealed_key, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                session_id,
                _digest(token),
                key_id,
                account_id,
                self._keys.seal(session_id, access_key),
                now,
                now + SESSION_LIFETIME,
            )
        return token

    async def find(self, token: str | None) -> Session | None:
        if not token or len(token) > 200:
            return None
        row = await self._pool().fetchrow(
            "SELECT session_id, key_id, account_id, sealed_key FROM console_sessions"
            " WHERE token_hash = $1 AND expires_at > $2",
            _digest(token),
            datetime.now(UTC),
        )
        if row is None:
            return None
        access_key = self._keys.open(row["session_id"], row["sealed_key"])
        if access_key is None:
            return None
        return Session(row["session_id"], row["key_id"], row["account_id"], access_key, token)

    async def reseal(self, session: Session, access_key: str) -> None:
        """The signed-in key was rotated: the session goes on with its new secret."""
        await self._pool().execute(
            "UPDATE console_sessions SET sealed_key = $2 WHERE session_id = $1",
            session.session_id,
            self._keys.seal(session.session_id, access_key),
        )

    async def close(self, token: str | None) -> None:
        if token and len(token) <= 200:
            await self._pool().execute(
                "DELETE FROM console_sessions WHERE token_hash = $1", _digest(token)
            )


class SignInThrottle:
    """Slows down guessing: after `limit` refused sign-ins from one address within `window`
    seconds, that address waits until the oldest refusal leaves the window. Bounded
    memory: the least recently refused addresses are forgotten first."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._clock = clock
        self._refused: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_seconds(self, address: str | None) -> float:
        """0 when this address may try now; otherwise how long until it may."""
        times = self._refused.get(address or "")
        if times is None:
            return 0.0
        now = self._clock()
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) < self.limit:
            return 0.0
        return self.window - (now - times[0])

    def refused(self, address: str | None) -> None:
        key = address or ""
        times = self._refused.pop(key, None) or deque(maxlen=self.limit)
        times.append(self._clock())
        self._refused[key] = times
        while len(self._refused) > self.max_addresses:
            self._refused.popitem(last=False)
