"""The usage service's settings (environment variables; see servicekit.settings)."""

from __future__ import annotations

from typing import ClassVar

from servicekit.settings import ServiceSettings


class UsageSettings(ServiceSettings):
    service_name: ClassVar[str] = "usage"
    default_http_port: ClassVar[int] = 8002
