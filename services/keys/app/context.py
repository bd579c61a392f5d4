"""Everything a request or command handler of the key service needs, built once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.keys.app.activity import LastUsedTracker, RefusalReporter
from services.keys.app.limit_book import LimitBook
from services.keys.app.unit_of_work import KeysUnitOfWork
from services.keys.app.use_cases import SecretTools
from services.keys.app.verification import Verifier
from services.keys.domain.leaks import DEFAULT_LEAK_POLICY, LeakPolicy


@dataclass(frozen=True)
class KeysContext:
    uow: KeysUnitOfWork
    tools: SecretTools
    verifier: Verifier
    reporter: RefusalReporter
    tracker: LastUsedTracker
    pool: Callable[[], Any]
    limits: LimitBook
    """Every key's limit state from `usage.limits`, and this process's admissions."""
    leak_policy: LeakPolicy = field(default=DEFAULT_LEAK_POLICY)
