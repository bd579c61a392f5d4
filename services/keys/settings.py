"""The key service's settings (environment variables; see servicekit.settings)."""

from __future__ import annotations

from typing import ClassVar

from servicekit.settings import ServiceSettings


class KeysSettings(ServiceSettings):
    service_name: ClassVar[str] = "keys"
    default_http_port: ClassVar[int] = 8000
