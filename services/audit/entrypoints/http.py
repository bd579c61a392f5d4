"""The audit service's HTTP API (INTERFACE.md): the routers of its resources, as one.

Callers authenticate with an access key of the keys service that has the scope
`audit:read`; they see their own account's records only.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.audit.entrypoints.api import events, verification

api_router = APIRouter()
for resource in (events, verification):
    api_router.include_router(resource.router)
