"""The key service's settings (environment variables; see servicekit.settings)."""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator

from servicekit.settings import ServiceSettings
from services.keys.adapters.github_keys import GitHubKeys


def _local_url(variable: str, port: int) -> str:
    # The local stack moves each service with its <SERVICE>_HTTP_PORT; follow it.
    return f"http://127.0.0.1:{os.environ.get(variable, str(port))}"


class KeysSettings(ServiceSettings):
    service_name: ClassVar[str] = "keys"
    default_http_port: ClassVar[int] = 8000

    keys_hash_pepper: SecretStr = Field(
        description="Key of the HMAC-SHA-256 lookup hash (>= 32 bytes; base64, hex or text)."
    )
    keys_master_key: SecretStr = Field(
        description="AES-256-GCM key that seals secrets for reveal (32 bytes, base64 or hex)."
    )
    keys_reveal_enabled: bool = Field(
        True, description="False for show-once deployments: a secret is shown only at creation."
    )
    keys_cache_ttl_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long a verification answer may be served from cache."
    )
    keys_negative_cache_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="How long an unknown secret is answered without the database.",
    )
    keys_verify_cache_enabled: bool = Field(
        True, description="False: every verification asks the database (for comparison only)."
    )
    keys_http_fast_answers: bool = Field(
        True,
        description="Answer POST /v1/verify from the verification cache in the HTTP server's"
        " protocol, before ASGI (servicekit.fast_http); false: every request through ASGI.",
    )
    keys_cache_max_entries: int = Field(200_000, ge=1000)
    keys_expiry_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="How often the scheduler looks for keys whose time is up."
    )
    keys_grace_interval_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often the scheduler looks for rotations whose old secret has been"
        " quiet for their end_grace_when_quiet_seconds (then ends the grace period).",
    )
    keys_audit_url: str = Field(
        default_factory=lambda: _local_url("AUDIT_HTTP_PORT", 8001),
        pattern=r"^https?://[^\s]+$",
        description="Base URL of the audit service, for the console's audit tab.",
    )
    keys_usage_url: str = Field(
        default_factory=lambda: _local_url("USAGE_HTTP_PORT", 8002),
        pattern=r"^https?://[^\s]+$",
        description="Base URL of the usage service, for the console's usage charts and alerts.",
    )
    keys_console_secure_cookies: bool = Field(
        False,
        description="True behind HTTPS: the console's cookies are then sent over HTTPS only.",
    )
    keys_leak_policy: str = Field(
        "production=quarantine,*=revoke",
        pattern=r"^\s*([a-z*][a-z0-9-]*\s*=\s*(quarantine|revoke)\s*(,\s*|$))*$",
        description="What a leak report does per environment: quarantine (disable with reason"
        " reported_leaked) or revoke; * for every environment not named.",
    )
    keys_github_public_keys: str = Field(
        "",
        description="GitHub's meta/public_keys/secret_scanning document (JSON) whose keys sign"
        " secret-scanning reports; empty: read keys_github_public_keys_file.",
    )
    keys_github_public_keys_file: str = Field(
        "", description="A file holding that document; neither set: every report is refused."
    )

    @field_validator("keys_github_public_keys")
    @classmethod
    def _github_document(cls, document: str) -> str:
        GitHubKeys.from_document(document)  # a bad document stops the start, named
        return document

    @field_validator("keys_github_public_keys_file")
    @classmethod
    def _github_file(cls, path: str) -> str:
        GitHubKeys.load("", path)
        return path

    keys_public_reports_per_minute: int = Field(
        30, ge=1, le=100_000, description="Requests to /v1/credentials/revoke per source address."
    )
