"""`/v1/whoami`: the bearer key's own id, account, environment and scopes."""

from __future__ import annotations

from fastapi import APIRouter

from servicekit.openapi import UNAUTHENTICATED, problems
from services.keys.entrypoints.dependencies import Caller
from services.keys.entrypoints.schemas import WhoAmI

router = APIRouter(prefix="/v1", tags=["identity"])


@router.get(
    "/whoami",
    summary="The bearer key's own id, account, environment and scopes",
    responses=problems(UNAUTHENTICATED),
)
async def whoami(principal: Caller) -> WhoAmI:
    return WhoAmI(
        key_id=principal.key_id,
        account_id=principal.account_id,
        environment=principal.environment,
        scopes=list(principal.scopes),
    )
