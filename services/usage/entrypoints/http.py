"""The usage service's HTTP API (INTERFACE.md): the routers of its resources, as one.

Callers are authenticated through the keys service's whoami (servicekit.callers) and
need the scope usage:read (the webhooks: keys:manage); they only ever see their own
account's keys, alerts and webhooks (another account's answers 404, as an unknown one does).
"""

from __future__ import annotations

from fastapi import APIRouter

from services.usage.entrypoints.api import alert_settings, alerts, usage, webhooks

api_router = APIRouter()
for resource in (usage, alerts, alert_settings, webhooks):
    api_router.include_router(resource.router)
