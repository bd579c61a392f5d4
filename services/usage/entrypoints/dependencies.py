"""What the usage service's routes are given through FastAPI's `Depends`: the service's
context and the caller, a bearer key of the account with the scope `usage:read`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from contracts import SCOPE_KEYS_MANAGE, SCOPE_USAGE_READ
from servicekit.access import caller_with, from_state
from servicekit.callers import Caller
from services.usage.app.context import UsageContext

Context = Annotated[UsageContext, Depends(from_state("usage"))]
Reader = Annotated[Caller, Depends(caller_with(SCOPE_USAGE_READ))]
Manager = Annotated[Caller, Depends(caller_with(SCOPE_KEYS_MANAGE))]
"""A key of the account with the scope keys:manage (changes the account's settings)."""
