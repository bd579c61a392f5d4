"""The audit service's settings (environment variables; see servicekit.settings)."""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic import Field, SecretStr

from servicekit.settings import ServiceSettings


def _default_keys_url() -> str:
    # The local stack moves the keys service with KEYS_HTTP_PORT; follow it.
    return f"http://127.0.0.1:{os.environ.get('KEYS_HTTP_PORT', '8000')}"


class AuditSettings(ServiceSettings):
    service_name: ClassVar[str] = "audit"
    default_http_port: ClassVar[int] = 8001

    audit_checkpoint_key: SecretStr = Field(
        description="Key of the HMAC-SHA-256 that chains the records and signs the checkpoints"
        " (>= 32 bytes of text; losing it makes the log unverifiable)."
    )
    audit_checkpoint_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="How often each chain head that moved is signed."
    )
    audit_retention_days: int = Field(
        400, ge=1, le=36_500, description="Records older than this may be removed by retention."
    )
    audit_caller_cache_seconds: float = Field(
        30.0, gt=0, le=600, description="How long a caller's whoami answer is reused."
    )
    audit_caller_refusal_cache_seconds: float = Field(
        5.0, gt=0, le=600, description="How long a refused access key is refused without asking."
    )
    audit_batch_size: int = Field(
        2000, ge=1, le=20_000, description="Messages taken from a topic per stored batch."
    )
    keys_service_url: str = Field(
        default_factory=_default_keys_url,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="Base URL of the keys service, for GET /v1/whoami.",
    )
