"""The audit service's composition root: the one place its object graph is built."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI

from servicekit.callers import CallerDirectory
from servicekit.periodic import Periodic
from servicekit.runtime import Runtime, collect_rarely, serve
from servicekit.settings import load_settings
from services.audit.adapters.chain_store import ChainStore
from services.audit.adapters.checkpoint_store import CheckpointStore
from services.audit.app.checkpoints import sign_heads
from services.audit.app.context import AuditContext
from services.audit.app.limits import LimitChanges
from services.audit.app.recording import Recorder
from services.audit.domain.chain import ChainKey
from services.audit.entrypoints.consumers import subscriptions
from services.audit.entrypoints.http import api_router
from services.audit.settings import AuditSettings

DESCRIPTION = "Records who did what to which access key, in a tamper-evident log."
MIGRATIONS: Final = Path(__file__).parent / "migrations"
WRITER_ROLE: Final = "audit_writer"
"""May INSERT and SELECT the history, never UPDATE or DELETE it (see the migrations)."""


def chain_key(settings: AuditSettings) -> ChainKey:
    """The audit key from AUDIT_CHECKPOINT_KEY (its UTF-8 bytes), or a one-line exit."""
    try:
        return ChainKey(settings.audit_checkpoint_key.get_secret_value().encode())
    except ValueError as exc:
        raise SystemExit(f"audit: invalid setting AUDIT_CHECKPOINT_KEY: {exc}") from None


def build(settings: AuditSettings) -> FastAPI:
    key = chain_key(settings)
    runtime = Runtime(settings, MIGRATIONS, DESCRIPTION, database_role=WRITER_ROLE)

    def pool() -> Any:
        return runtime.pool

    recorder = Recorder(ChainStore(pool), key)
    callers = CallerDirectory(
        settings.keys_service_url,
        ttl=settings.audit_caller_cache_seconds,
        refusal_ttl=settings.audit_caller_refusal_cache_seconds,
    )
    limits = LimitChanges(recorder, pool)
    for subscription in subscriptions(recorder, settings.audit_batch_size, callers, limits):
        runtime.subscribe(subscription)

    checkpoints = CheckpointStore(pool)
    checkpointer = Periodic(
        "checkpoints",
        settings.audit_checkpoint_interval_seconds,
        lambda: sign_heads(checkpoints, key),
    )

    async def start() -> None:
        await callers.start()
        checkpointer.start()

    async def stop() -> None:
        await checkpointer.stop(final_run=True)  # what was written before the stop is signed
        await callers.stop()

    runtime.on_start(start)
    runtime.on_stop(stop)
    app = runtime.create_app()
    app.include_router(api_router)
    app.state.audit = AuditContext(pool, key, callers)
    app.state.callers = callers
    return app


def main() -> None:
    settings = load_settings(AuditSettings)
    app = build(settings)
    collect_rarely()  # key events by the thousand, as usage reads its records
    serve(app, settings)
