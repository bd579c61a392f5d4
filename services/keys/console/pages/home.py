"""The console's entrances: the service's root and the console's own lead to the keys."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from services.keys.console.context import BASE, KEYS_PAGE

router = APIRouter(include_in_schema=False)


@router.get("/")
@router.get(BASE)
@router.get(f"{BASE}/")
@router.get(f"{BASE}/settings")
async def home() -> RedirectResponse:
    return RedirectResponse(KEYS_PAGE, status_code=303)
