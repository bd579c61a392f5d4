"""The usage service's composition root: the one place its object graph is built."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from contracts import USAGE_ALERTS, Alert
from servicekit.runtime import Runtime, serve
from servicekit.settings import load_settings
from services.usage.entrypoints.consumers import subscriptions
from services.usage.settings import UsageSettings

DESCRIPTION = "Per-key usage from the gateways' records, and alerts on unusual key activity."


def build(settings: UsageSettings) -> FastAPI:
    runtime = Runtime(settings, Path(__file__).parent / "migrations", DESCRIPTION)
    for subscription in subscriptions(runtime):
        runtime.subscribe(subscription)
    runtime.writes(USAGE_ALERTS, Alert, "Alerts on unusual key activity, keyed by key_id.")
    return runtime.create_app()


def main() -> None:
    settings = load_settings(UsageSettings)
    serve(build(settings), settings)
