"""What the audit service's routes are given through FastAPI's `Depends`: the service's
context and the caller, a bearer key of the account with the scope `audit:read`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from contracts import SCOPE_AUDIT_READ
from servicekit.access import caller_with, from_state
from servicekit.callers import Caller
from services.audit.app.context import AuditContext

Context = Annotated[AuditContext, Depends(from_state("audit"))]
Reader = Annotated[Caller, Depends(caller_with(SCOPE_AUDIT_READ))]
