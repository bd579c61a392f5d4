"""The audit service's settings (environment variables; see servicekit.settings)."""

from __future__ import annotations

from typing import ClassVar

from servicekit.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    service_name: ClassVar[str] = "audit"
    default_http_port: ClassVar[int] = 8001
