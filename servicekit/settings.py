"""Typed settings from the environment, shared by the three services.

Names are those of INTERFACE.md: `KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL` (or one URL per
service, `KEYS_DATABASE_URL`, `AUDIT_DATABASE_URL`, `USAGE_DATABASE_URL`), and
`<SERVICE>_HTTP_PORT`. A malformed value stops the process at start with one line that
names the variable.
"""

from __future__ import annotations

import os
import sys
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SERVER_URL = "postgresql://instagen:instagen@127.0.0.1:5432/postgres"


def database_url_for(service: str, server_url: str) -> str:
    """The service's own database on the server named by `server_url` (its path replaced)."""
    parts = urlsplit(server_url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("must be a postgresql:// URL")
    return urlunsplit((parts.scheme, parts.netloc, f"/{service}", parts.query, parts.fragment))


class ServiceSettings(BaseSettings):
    """Settings every service has; a subclass names the service and its HTTP port variable."""

    service_name: ClassVar[str]
    default_http_port: ClassVar[int]

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", pattern=r"^[^\s,]+:\d{1,5}(,[^\s,]+:\d{1,5})*$"
    )
    database_url: str = Field(DEFAULT_SERVER_URL, description="server URL; see database_url_for")
    service_database_url: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(0, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file: str | None = None
    kafka_client_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _service_variables(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Read `<SERVICE>_HTTP_PORT` and `<SERVICE>_DATABASE_URL` from the environment."""
        # Only the per-service names count: a generic HTTP_PORT shared by three services on
        # one host would put them all on one port.
        prefix = cls.service_name.upper()
        values["http_port"] = os.environ.get(f"{prefix}_HTTP_PORT", cls.default_http_port)
        values["service_database_url"] = os.environ.get(f"{prefix}_DATABASE_URL")
        if isinstance(values.get("log_level"), str):
            values["log_level"] = values["log_level"].upper()
        return values

    @property
    def service_database(self) -> str:
        """The full URL of this service's own database."""
        if self.service_database_url:
            return self.service_database_url
        return database_url_for(self.service_name, self.database_url)

    @field_validator("database_url", "service_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None:
            database_url_for(cls.service_name, value)
        return value


S = TypeVar("S", bound=ServiceSettings)

_ENV_NAMES = {"http_port": "{SERVICE}_HTTP_PORT", "service_database_url": "{SERVICE}_DATABASE_URL"}


def env_name(cls: type[ServiceSettings], field: str) -> str:
    """The environment variable that sets `field` of `cls`."""
    template = _ENV_NAMES.get(field)
    if template is not None:
        return template.format(SERVICE=cls.service_name.upper())
    return field.upper()


def load_settings(cls: type[S]) -> S:
    """Build the settings or exit with one line per bad variable (no traceback)."""
    try:
        return cls()
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            name = env_name(cls, field) if field else "settings"
            print(f"{cls.service_name}: invalid setting {name}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
