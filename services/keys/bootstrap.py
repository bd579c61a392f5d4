"""The key service's composition root: the one place its object graph is built."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from servicekit.runtime import Runtime, serve
from servicekit.settings import load_settings
from services.keys.entrypoints.commands import command_subscription
from services.keys.settings import KeysSettings

DESCRIPTION = "The source of truth for InstaGen access keys: commands in, events out, verification."


def build(settings: KeysSettings) -> FastAPI:
    runtime = Runtime(settings, Path(__file__).parent / "migrations", DESCRIPTION)
    runtime.subscribe(command_subscription(runtime))
    return runtime.create_app()


def main() -> None:
    settings = load_settings(KeysSettings)
    serve(build(settings), settings)
