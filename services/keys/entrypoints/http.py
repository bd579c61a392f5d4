"""The key service's HTTP API (INTERFACE.md): the routers of its resources, as one."""

from __future__ import annotations

from fastapi import APIRouter

from services.keys.entrypoints.api import (
    authorization,
    history,
    identity,
    key_actions,
    keys,
    leaks,
    verification,
)
from services.keys.entrypoints.errors import STATUS_OF_CODE, domain_error
from services.keys.entrypoints.paging import key_list_page

__all__ = ["STATUS_OF_CODE", "api_router", "domain_error", "key_list_page"]

api_router = APIRouter()
for resource in (keys, key_actions, history, identity, verification, authorization, leaks):
    api_router.include_router(resource.router)
