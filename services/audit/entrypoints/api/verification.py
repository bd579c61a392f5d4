"""`GET /v1/audit/verify`: the account's hash chain recomputed, its first broken record."""

from __future__ import annotations

from fastapi import APIRouter

from servicekit.openapi import AUTHENTICATED, problems
from services.audit.adapters.chain_reader import snapshot
from services.audit.app.verification import verify_chain
from services.audit.entrypoints.dependencies import Context, Reader
from services.audit.entrypoints.schemas import VerifyReport

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get(
    "/verify",
    summary="Recompute the account's hash chain; name the first broken record, if any",
    responses=problems(*AUTHENTICATED),
)
async def verify(ctx: Context, caller: Reader) -> VerifyReport:
    async with snapshot(ctx.pool()) as chains:
        verdict = await verify_chain(chains, ctx.key, caller.account_id)
    return VerifyReport.of(verdict)
