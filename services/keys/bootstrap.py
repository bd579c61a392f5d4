"""The key service's composition root: the one place its object graph is built."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from fastapi import FastAPI
from starlette.types import ASGIApp

from contracts import KEYS_EVENTS, USAGE_LIMITS, USAGE_RECORDS, Event, UsageRecord
from servicekit.consumer import caught_up
from servicekit.fast_http import FastAnswers
from servicekit.logging import get_logger
from servicekit.periodic import Periodic
from servicekit.runtime import Runtime, serve
from servicekit.settings import load_settings
from services.keys.adapters import queries
from services.keys.adapters.crypto import SecretHasher, SecretVault, decode_key_material
from services.keys.adapters.github_keys import GitHubKeys
from services.keys.adapters.publisher import EventPublisher, Nudger
from services.keys.app.activity import LastUsedTracker, RefusalReporter
from services.keys.app.context import KeysContext
from services.keys.app.expiry import expire_due_keys
from services.keys.app.grace import end_quiet_grace_periods
from services.keys.app.leaks import PublicReports
from services.keys.app.limit_book import LimitBook
from services.keys.app.unit_of_work import KeysUnitOfWork
from services.keys.app.use_cases import SecretTools
from services.keys.app.verification import Verifier
from services.keys.console.backends import Backends
from services.keys.console.context import Console, ConsoleConfig
from services.keys.console.install import install as install_console
from services.keys.console.sessions import ConsoleSecrets, SessionStore, SignInThrottle
from services.keys.domain.leaks import LeakPolicy
from services.keys.domain.recorded import RecordedEvent
from services.keys.entrypoints.api.leaks import (
    GITHUB_REPORT_PATH,
    MAX_GITHUB_BODY_BYTES,
    LeakIntake,
)
from services.keys.entrypoints.authorize import AuthorizeFastPath
from services.keys.entrypoints.commands import cache_subscription, command_subscription
from services.keys.entrypoints.http import api_router
from services.keys.entrypoints.last_use import last_use_subscription
from services.keys.entrypoints.limits import limits_subscription
from services.keys.entrypoints.verify import VerifyFastPath, verify_answerer
from services.keys.settings import KeysSettings

DESCRIPTION = "The source of truth for InstaGen access keys: commands in, events out, verification."
MIGRATIONS = Path(__file__).parent / "migrations"
log = get_logger(__name__)


def _master_key(settings: KeysSettings) -> bytes:
    return decode_key_material(settings.keys_master_key.get_secret_value(), "KEYS_MASTER_KEY", 32)


def secret_tools(settings: KeysSettings) -> SecretTools:
    pepper = decode_key_material(
        settings.keys_hash_pepper.get_secret_value(), "KEYS_HASH_PEPPER", None
    )
    master = _master_key(settings)
    return SecretTools(SecretHasher(pepper), SecretVault(master), settings.keys_reveal_enabled)


def console(settings: KeysSettings, ctx: KeysContext) -> Console:
    secrets = ConsoleSecrets(_master_key(settings))
    return Console(
        ctx,
        SessionStore(ctx.pool, secrets),
        secrets,
        Backends(settings.keys_audit_url, settings.keys_usage_url),
        ConsoleConfig(
            reveal_enabled=settings.keys_reveal_enabled,
            secure_cookies=settings.keys_console_secure_cookies,
        ),
    )


def build(settings: KeysSettings) -> FastAPI:
    # Every send of this service is a whole batch it then waits for (a publisher round, the
    # results of a batch of commands): a linger would add its time to each hop of a command.
    runtime = Runtime(settings, MIGRATIONS, DESCRIPTION, producer_linger_ms=0)
    tools = secret_tools(settings)

    def pool() -> asyncpg.Pool:
        return runtime.pool

    uow = KeysUnitOfWork(pool)
    # When each rotated-out secret in its grace period was last presented here.
    previous_uses = LastUsedTracker(
        lambda latest: queries.record_previous_secret_used(pool(), latest)
    )
    verifier = Verifier(
        tools.hasher,
        lambda digest: queries.find_secret(pool(), digest),
        ttl=settings.keys_cache_ttl_seconds,
        negative_ttl=settings.keys_negative_cache_seconds,
        max_entries=settings.keys_cache_max_entries,
        enabled=settings.keys_verify_cache_enabled,
        on_previous_secret=lambda known: previous_uses.touch(known.key_id, known.account_id),
    )
    reporter = RefusalReporter(
        runtime.writes(
            USAGE_RECORDS,
            UsageRecord,
            "Refused verifications of known keys: 401 for its status, 403 for its networks,"
            " 429 for its limits.",
        )
    )
    tracker = LastUsedTracker(lambda latest: queries.record_last_used(pool(), latest))
    ctx = KeysContext(
        uow,
        tools,
        verifier,
        reporter,
        tracker,
        pool,
        LimitBook(),
        LeakPolicy.parse(settings.keys_leak_policy),
    )
    leaks = LeakIntake(
        GitHubKeys.load(settings.keys_github_public_keys, settings.keys_github_public_keys_file),
        PublicReports(ctx),
        SignInThrottle(limit=settings.keys_public_reports_per_minute),
    )
    publisher = EventPublisher(
        lambda: asyncpg.connect(settings.service_database),
        runtime.writes(KEYS_EVENTS, Event, "Every change to every key, in stream order per key."),
    )

    nudger = Nudger(publisher, pool)

    async def after_commit(recorded: list[RecordedEvent]) -> None:
        # This process refuses a changed key from the moment the change is acknowledged.
        for event in recorded:
            verifier.invalidate(event.key_id)
        nudger.nudge()

    uow.after_commit(after_commit)
    runtime.subscribe(command_subscription(runtime, ctx))
    runtime.subscribe(cache_subscription(ctx))
    runtime.subscribe(last_use_subscription(ctx))
    runtime.subscribe(limits_subscription(ctx))

    workers = [
        Periodic("refusal-reporter", 0.2, reporter.flush),
        Periodic("last-used-tracker", 5.0, tracker.flush),
        Periodic("previous-secret-uses", 0.5, previous_uses.flush),
        Periodic(
            "grace-scheduler",
            settings.keys_grace_interval_seconds,
            end_quiet_grace_periods(uow, pool, previous_uses),
        ),
        Periodic("public-leak-reports", 0.2, leaks.public.drain),
        Periodic(
            "expiry-scheduler", settings.keys_expiry_interval_seconds, expire_due_keys(uow, pool)
        ),
    ]

    async def learn_limit_states() -> None:
        # Ready only once every state published before the start is known: a key limited
        # then is refused by this process from its first answer.
        ends = await caught_up(runtime.processors[USAGE_LIMITS])
        log.info("limit_states_read", topic=USAGE_LIMITS, ends=ends, keys=len(ctx.limits))

    async def start_workers() -> None:
        publisher.start()
        for worker in workers:
            worker.start()

    async def stop_workers() -> None:
        for worker in workers:
            await worker.stop(final_run=worker.name not in ("expiry-scheduler", "grace-scheduler"))
        await publisher.stop()

    browser_console = console(settings, ctx)

    async def stop_console() -> None:
        await browser_console.backends.close()

    runtime.on_start(learn_limit_states)
    runtime.on_start(start_workers)
    runtime.on_stop(stop_workers)
    runtime.on_stop(stop_console)
    app = runtime.create_app(body_limits={GITHUB_REPORT_PATH: MAX_GITHUB_BODY_BYTES})
    app.include_router(api_router)
    install_console(app, browser_console)
    app.add_middleware(AuthorizeFastPath, ctx=ctx)
    app.state.keys = ctx
    app.state.leaks = leaks
    app.state.publisher = publisher
    return app


def asgi(app: FastAPI) -> ASGIApp:
    """What the server runs: `/v1/verify` answered in front of the framework (gateways ask
    on every request), everything else by the app."""
    return VerifyFastPath(app, app.state.keys)


def main() -> None:
    settings = load_settings(KeysSettings)
    app = build(settings)
    # /v1/verify from the verification cache is answered by the server's protocol; what
    # that declines, by `asgi`'s fast path; everything else by the app.
    fast = settings.keys_http_fast_answers and settings.keys_verify_cache_enabled
    serve(
        asgi(app),
        settings,
        FastAnswers.answering(verify_answerer(app.state.keys)) if fast else None,
    )
