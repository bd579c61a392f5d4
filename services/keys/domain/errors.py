"""Each rule a request can break, as a type with a stable code.

The code is what programs branch on (HTTP error bodies, command results); the HTTP status
is decided once, in the HTTP entrypoint, from the code.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def details(self) -> dict[str, Any]:
        """Fields a program needs beyond the code (added to the HTTP error body)."""
        return {}


class KeyNotFound(DomainError):
    code = "not_found"


class KeyAlreadyExists(DomainError):
    code = "key_exists"


class KeyRevoked(DomainError):
    code = "key_revoked"


class KeyExpired(DomainError):
    code = "key_expired"


class KeyAlreadyDisabled(DomainError):
    code = "key_already_disabled"


class KeyAlreadyActive(DomainError):
    code = "key_already_active"


class NothingToChange(DomainError):
    code = "nothing_to_change"


class ExpiryInPast(DomainError):
    code = "expires_at_in_past"


class GraceRequired(DomainError):
    """A rotation asked to end its grace period early, but gave it none."""

    code = "grace_period_required"


class VersionConflict(DomainError):
    code = "version_conflict"


class RevealDisabled(DomainError):
    code = "reveal_disabled"


class SecretUnavailable(DomainError):
    code = "secret_unavailable"


class InsufficientScope(DomainError):
    code = "insufficient_scope"


class AlreadyDone(DomainError):
    """The same request (Idempotency-Key, console form) was carried out before."""

    code = "already_done"

    def __init__(self, message: str, key_id: uuid.UUID | None, prefix: str | None) -> None:
        super().__init__(message)
        self.key_id = key_id
        self.prefix = prefix

    @property
    def details(self) -> dict[str, Any]:  # what a client that lost the first answer needs
        return {"key_id": str(self.key_id), "prefix": self.prefix}


class IdempotencyKeyReused(DomainError):
    """The same Idempotency-Key came with a different request."""

    code = "idempotency_key_reused"


class CommandIdReused(DomainError):
    """A command came with the id of another (another account's, another type's)."""

    code = "command_id_reused"
