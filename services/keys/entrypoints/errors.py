"""Each rule a request can break, mapped once to an HTTP status, and declared as such."""

from __future__ import annotations

from typing import Final

from servicekit.errors import ApiError
from servicekit.openapi import Problem, refusal
from services.keys.domain import errors

STATUS_OF_CODE: Final = {
    errors.KeyNotFound.code: 404,
    errors.KeyAlreadyExists.code: 409,
    errors.KeyRevoked.code: 409,
    errors.KeyExpired.code: 409,
    errors.KeyAlreadyDisabled.code: 409,
    errors.KeyAlreadyActive.code: 409,
    errors.NothingToChange.code: 409,
    errors.VersionConflict.code: 409,
    errors.ExpiryInPast.code: 422,
    errors.GraceRequired.code: 422,
    errors.RevealDisabled.code: 403,
    errors.SecretUnavailable.code: 410,
    errors.InsufficientScope.code: 403,
    errors.AlreadyDone.code: 409,
    errors.IdempotencyKeyReused.code: 422,
}
_WHY: Final = {
    403: "The key lacks a scope this needs, or the service does not allow it.",
    404: "No such key in the caller's account.",
    409: "The key's state does not allow this now.",
    410: "The key's secret is gone (revoked).",
    422: "The request is well-formed but breaks a rule.",
}


def domain_error(error: errors.DomainError) -> ApiError:
    status = STATUS_OF_CODE.get(error.code, 400)
    return ApiError(status, error.code, error.message, extra=error.details)


def refusals(*kinds: type[errors.DomainError]) -> list[Problem]:
    """The declared refusals of the domain errors a route's use case may raise."""
    return [refusal(STATUS_OF_CODE[k.code], _WHY[STATUS_OF_CODE[k.code]], k.code) for k in kinds]
