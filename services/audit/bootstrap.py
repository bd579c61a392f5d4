"""The audit service's composition root: the one place its object graph is built."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from servicekit.runtime import Runtime, serve
from servicekit.settings import load_settings
from services.audit.entrypoints.consumers import subscriptions
from services.audit.settings import AuditSettings

DESCRIPTION = "Records who did what to which access key, in a tamper-evident log."


def build(settings: AuditSettings) -> FastAPI:
    runtime = Runtime(settings, Path(__file__).parent / "migrations", DESCRIPTION)
    for subscription in subscriptions(runtime):
        runtime.subscribe(subscription)
    return runtime.create_app()


def main() -> None:
    settings = load_settings(AuditSettings)
    serve(build(settings), settings)
