"""What each request does to a key, inside a transaction the caller owns.

Each use case loads the key from its events, asks the aggregate whether the change is
allowed, and appends what it decided. A concurrent change to the same key makes the
append fail with VersionConflict; `in_transaction` then runs the whole decision again
on the fresh state (unless the caller pinned a version with If-Match).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from contracts import CommandResult, KeyAttributes, KeyPatch
from services.keys.adapters.crypto import SecretHasher, SecretVault
from services.keys.app.unit_of_work import KeysTransaction, KeysUnitOfWork
from services.keys.domain import errors
from services.keys.domain.key import AccessKey, create_key
from services.keys.domain.leaks import LeakPolicy
from services.keys.domain.recorded import Change, Meta, RecordedEvent
from services.keys.domain.secret import NewSecret, generate_secret

T = TypeVar("T")
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class SecretTools:
    hasher: SecretHasher
    vault: SecretVault
    reveal_enabled: bool


@dataclass(frozen=True)
class Outcome:
    key: AccessKey
    events: list[RecordedEvent]
    secret: NewSecret | None = None
    """Only for create, rotate and reveal: handed to the caller, never stored in clear."""

    def accepted(self, command_id: uuid.UUID, with_prefix: bool, **who: Any) -> CommandResult:
        """The stored result of a command (or request made once) that had this outcome;
        `who` is the command's context (account_id, command_type, actor, correlation_id)."""
        return CommandResult(
            command_id=command_id,
            status="accepted",
            key_id=self.key.key_id,
            event_ids=[e.event_id for e in self.events],
            prefix=self.key.prefix if with_prefix else None,
            **who,
        )


async def in_transaction(
    uow: KeysUnitOfWork,
    work: Callable[[KeysTransaction], Awaitable[T]],
    retry_conflicts: bool = True,
) -> T:
    attempts = MAX_ATTEMPTS if retry_conflicts else 1
    for attempt in range(1, attempts + 1):
        try:
            async with uow.transaction(from_events=attempt > 1) as tx:
                return await work(tx)
        except errors.VersionConflict:
            if attempt == attempts:
                raise
            # Jittered backoff, so writers racing on one key stop colliding in lockstep.
            await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))  # noqa: S311 - not crypto
    raise AssertionError("unreachable")


# Names the ids of requests made once (uuid5 of account, action and the caller's token).
REQUEST_NAMESPACE = uuid.UUID("6f1c3b0e-4d7a-5c2b-9e8f-0a1b2c3d4e5f")


@dataclass(frozen=True)
class Once:
    """A request to carry out once: the caller's token (an HTTP Idempotency-Key, a console
    form's one-time field) for an action ("create", "rotate <key id>"), and what it asks
    (its canonical form: the same token with another request is refused)."""

    command_type: str
    action: str
    token: str | None
    asks: str = ""

    def request_id(self, account_id: str) -> uuid.UUID:
        """The token means something only within its account and action, so another
        account, or the rotation of another key, never matches it."""
        return uuid.uuid5(REQUEST_NAMESPACE, f"{account_id}\n{self.action}\n{self.token}")

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.asks.encode()).digest()


async def once(
    tx: KeysTransaction,
    request: Once | None,
    account_id: str,
    meta: Meta,
    work: Callable[[], Awaitable[Outcome]],
) -> Outcome:
    """Run `work` at most once per request: its id is stored with the change, in its
    transaction, like a Kafka command's. A repeat (a retry after a lost answer, a refreshed
    page) is refused with what the first one did: the secret that one handed out is not
    kept, so it cannot be answered again."""
    if request is None or request.token is None:
        return await work()
    request_id = request.request_id(account_id)
    made = await tx.request_made(request_id)
    if made is not None:
        done, digest = made
        if digest != request.digest:
            raise errors.IdempotencyKeyReused(
                "This Idempotency-Key was used before for a different request; use a new key"
                " for each request, the same one only to retry it unchanged."
            )
        what = "created" if request.command_type == "CreateKey" else "rotated"
        raise errors.AlreadyDone(
            f"This request was made before: key {done.key_id} ({done.prefix}...) was {what}"
            " then, and its secret was handed out in that answer only. Find the key in the"
            " list; rotate it if that secret was lost.",
            done.key_id,
            done.prefix,
        )
    outcome = await work()
    result = outcome.accepted(
        request_id,
        with_prefix=True,
        account_id=account_id,
        command_type=request.command_type,
        actor=meta.actor,
        correlation_id=meta.correlation_id,
    )
    # A concurrent twin makes this a VersionConflict: the retry then finds it done.
    await tx.save_command_result(
        request_id, account_id, request.command_type, result, request.digest
    )
    return outcome


def check_grantable(holder_scopes: Sequence[str], granted: Sequence[str]) -> None:
    """A key may give a new or changed key only scopes it holds itself, so an account's
    admin cannot mint, say, a platform gateway key (keys:verify:any-account). Operators
    (the CLI) and internal services (keys.commands) are trusted and not held to this."""
    beyond = sorted(set(granted) - set(holder_scopes))
    if beyond:
        raise errors.InsufficientScope(
            f"A key can grant only scopes it holds itself; this one lacks {', '.join(beyond)}."
        )


async def owned_key(tx: KeysTransaction, account_id: str, key_id: uuid.UUID) -> AccessKey:
    """The key, if it belongs to `account_id`; another account's key does not exist."""
    key = await tx.load(key_id)
    if key is None or key.account_id != account_id:
        raise errors.KeyNotFound(f"no key {key_id} in this account")
    return key


def _pinned(key: AccessKey, expected_version: int | None) -> None:
    if expected_version is not None and key.version != expected_version:
        raise errors.VersionConflict(
            f"key {key.key_id} is at version {key.version}, not {expected_version}"
        )


async def _apply(tx: KeysTransaction, key: AccessKey, change: Change, meta: Meta) -> Outcome:
    state = await tx.append(key, key.key_id, key.account_id, [change], meta)
    return Outcome(state, tx.recorded[-1:])


async def create(
    tx: KeysTransaction,
    tools: SecretTools,
    account_id: str,
    attributes: KeyAttributes,
    meta: Meta,
    key_id: uuid.UUID | None = None,
) -> Outcome:
    key_id = key_id or uuid.uuid4()
    if await tx.load(key_id) is not None:
        raise errors.KeyAlreadyExists(f"key {key_id} exists already")
    secret = generate_secret(attributes.environment)
    change = create_key(
        attributes, secret.prefix, tools.hasher.digest(secret.plaintext), meta.occurred_at
    )
    state = await tx.append(None, key_id, account_id, [change], meta)
    await tx.seal(key_id, tools.vault.seal(key_id, secret.plaintext))
    return Outcome(state, tx.recorded[-1:], secret)


async def update(
    tx: KeysTransaction,
    account_id: str,
    key_id: uuid.UUID,
    patch: KeyPatch,
    meta: Meta,
    expected_version: int | None = None,
) -> Outcome:
    key = await owned_key(tx, account_id, key_id)
    _pinned(key, expected_version)
    return await _apply(tx, key, key.update(patch, meta.occurred_at), meta)


async def disable(
    tx: KeysTransaction,
    account_id: str,
    key_id: uuid.UUID,
    reason: str,
    meta: Meta,
    expected_version: int | None = None,
) -> Outcome:
    key = await owned_key(tx, account_id, key_id)
    _pinned(key, expected_version)
    return await _apply(tx, key, key.disable(reason, meta.occurred_at), meta)


async def enable(
    tx: KeysTransaction,
    account_id: str,
    key_id: uuid.UUID,
    reason: str | None,
    meta: Meta,
    expected_version: int | None = None,
) -> Outcome:
    key = await owned_key(tx, account_id, key_id)
    _pinned(key, expected_version)
    return await _apply(tx, key, key.enable(reason, meta.occurred_at), meta)


async def rotate(
    tx: KeysTransaction,
    tools: SecretTools,
    account_id: str,
    key_id: uuid.UUID,
    grace_period_seconds: int,
    meta: Meta,
    end_grace_when_quiet_seconds: int | None = None,
) -> Outcome:
    key = await owned_key(tx, account_id, key_id)
    secret = generate_secret(key.environment)
    grace_end = (
        meta.occurred_at + timedelta(seconds=grace_period_seconds) if grace_period_seconds else None
    )
    change = key.rotate(
        secret.prefix,
        tools.hasher.digest(secret.plaintext),
        grace_end,
        meta.occurred_at,
        end_grace_when_quiet_seconds,
    )
    outcome = await _apply(tx, key, change, meta)
    await tx.seal(key_id, tools.vault.seal(key_id, secret.plaintext))
    return Outcome(outcome.key, outcome.events, secret)


async def reveal(
    tx: KeysTransaction, tools: SecretTools, account_id: str, key_id: uuid.UUID, meta: Meta
) -> Outcome:
    if not tools.reveal_enabled:
        raise errors.RevealDisabled("this deployment shows a secret only once, at creation")
    key = await owned_key(tx, account_id, key_id)
    change = key.reveal()
    sealed = await tx.sealed(key_id)
    if sealed is None:
        raise errors.SecretUnavailable(f"the secret of key {key_id} is not kept")
    secret = NewSecret(plaintext=tools.vault.open(key_id, sealed), prefix=key.prefix)
    outcome = await _apply(tx, key, change, meta)
    return Outcome(outcome.key, outcome.events, secret)


async def revoke(
    tx: KeysTransaction, account_id: str, key_id: uuid.UUID, reason: str | None, meta: Meta
) -> Outcome:
    key = await owned_key(tx, account_id, key_id)
    outcome = await _apply(tx, key, key.revoke(reason), meta)
    await tx.destroy_secret(key_id)  # revoking destroys the only copy that could be revealed
    return outcome


async def report_leaked(
    tx: KeysTransaction,
    account_id: str,
    key_id: uuid.UUID,
    source: str,
    url: str | None,
    policy: LeakPolicy,
    meta: Meta,
) -> Outcome:
    """KeyReportedLeaked, then the KeyDisabled or KeyRevoked the environment's policy asks
    for, in one append; nothing when an earlier report already took the key out of use."""
    key = await owned_key(tx, account_id, key_id)
    action = policy.action_for(key.environment)
    changes = key.report_leaked(source, url, action, meta.occurred_at)
    if not changes:
        return Outcome(key, [])
    state = await tx.append(key, key_id, account_id, changes, meta)
    if state.status == "revoked":
        await tx.destroy_secret(key_id)
    return Outcome(state, tx.recorded[-len(changes) :])


async def rotate_and_enable(
    tx: KeysTransaction, tools: SecretTools, account_id: str, key_id: uuid.UUID, meta: Meta
) -> Outcome:
    """A quarantined key back in service: the leaked secret replaced at once (no grace),
    then the key enabled, in one transaction."""
    rotated = await rotate(tx, tools, account_id, key_id, 0, meta)
    enabled = await enable(tx, account_id, key_id, "the leaked secret was rotated out", meta)
    return Outcome(enabled.key, [*rotated.events, *enabled.events], rotated.secret)


async def end_grace_if_quiet(tx: KeysTransaction, key_id: uuid.UUID, meta: Meta) -> Outcome | None:
    """KeyGracePeriodEnded when the old secret of the key's rotation has been quiet long
    enough by its last use across every verifier (stored, read in this transaction);
    nothing otherwise, so a repeat (another process, a retry) appends nothing."""
    key = await tx.load(key_id)
    if key is None:
        return None
    last_used_at = await tx.previous_secret_last_used(key_id)
    change = key.end_grace_if_quiet(last_used_at, meta.occurred_at)
    if change is None:
        return None
    return await _apply(tx, key, change, meta)


async def expire(tx: KeysTransaction, key_id: uuid.UUID, meta: Meta) -> Outcome | None:
    key = await tx.load(key_id)
    change = key.expire(meta.occurred_at) if key else None
    if key is None or change is None:
        return None
    return await _apply(tx, key, change, meta)
