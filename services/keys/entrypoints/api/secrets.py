"""What the answers that hand out a secret share: the secret itself, made at most once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header

from services.keys.app import use_cases
from services.keys.entrypoints.schemas import KeyView, KeyWithSecret

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Your id for this request (e.g. a UUID), printable ASCII: sent again with"
        " a retry, it makes sure the key is created (or rotated) once. A repeat answers 409"
        " already_done naming the key, since the secret is handed out once.",
    ),
]


def with_secret(outcome: use_cases.Outcome) -> KeyWithSecret:
    if outcome.secret is None:
        raise RuntimeError("this use case always returns the secret")
    return KeyWithSecret(**KeyView.of(outcome.key).model_dump(), key=outcome.secret.plaintext)
