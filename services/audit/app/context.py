"""What the HTTP entrypoints of the audit service work with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from servicekit.callers import CallerDirectory
from services.audit.domain.chain import ChainKey


@dataclass(frozen=True)
class AuditContext:
    pool: Callable[[], Any]
    key: ChainKey
    callers: CallerDirectory
