"""Operator CLI of the key service: `python -m services.keys.cli --help`.

It works on the service's own database with the same use cases as the HTTP API (events
it appends are published by the running service). Reads the same environment as the
service (KEYS_DATABASE_URL or DATABASE_URL, KEYS_HASH_PEPPER, KEYS_MASTER_KEY).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from contracts import (
    ALL_PLATFORM_SCOPES,
    LIMIT_NAMES,
    Actor,
    KeyAttributes,
    KeyPatch,
    RotateKeyData,
)
from servicekit import db
from servicekit.settings import load_settings
from services.keys.adapters import projections, queries
from services.keys.app import use_cases
from services.keys.app.unit_of_work import KeysTransaction, KeysUnitOfWork
from services.keys.bootstrap import MIGRATIONS, secret_tools
from services.keys.domain.errors import DomainError
from services.keys.domain.recorded import Meta
from services.keys.entrypoints.schemas import KeyView
from services.keys.settings import KeysSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
T = TypeVar("T")
Account = Annotated[str, typer.Option("--account", "-a", help="The account the key belongs to.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


PerMinute = Annotated[int | None, typer.Option(help="Requests allowed per minute (UTC).")]
PerHour = Annotated[int | None, typer.Option(help="Requests allowed per hour (UTC).")]
PerDay = Annotated[int | None, typer.Option(help="Requests allowed per day (UTC).")]
Budget = Annotated[
    str | None,
    typer.Option(help="Tokens (in + out) per day or month, e.g. 10000/day or 2000000/month."),
]
AllowCidr = Annotated[
    list[str] | None,
    typer.Option(help="A network the key may be used from (203.0.113.0/24); repeat."),
]
M = TypeVar("M", bound=BaseModel)


def _limits(
    minute: int | None,
    hour: int | None,
    day: int | None,
    budget: str | None,
    cidrs: list[str] | None,
) -> dict[str, Any]:
    tokens, _, period = (budget or "").partition("/")
    return {
        "rate_limit_per_minute": minute,
        "rate_limit_per_hour": hour,
        "rate_limit_per_day": day,
        "token_budget": {"tokens": tokens, "period": period or "month"} if budget else None,
        "allowed_cidrs": cidrs or [],
    }


def _checked(model: type[M], values: dict[str, Any]) -> M:
    """The options as the contract takes them, or each wrong one named and exit 2."""
    try:
        return model.model_validate(values)
    except ValidationError as invalid:
        for error in invalid.errors(include_url=False):
            field = ".".join(str(p) for p in error["loc"]) or "options"
            console.print(f"[red]invalid[/red]: {field}: {error['msg']}")
        raise typer.Exit(2) from None


def _operator() -> Actor:
    return Actor(type="user", id=f"cli:{getpass.getuser()}")


async def _with_pool(work: Callable[[Any], Awaitable[T]]) -> T:
    settings = load_settings(KeysSettings)
    pool = await asyncpg.create_pool(settings.service_database, min_size=1, max_size=2)
    try:
        await db.migrate(pool, MIGRATIONS)
        return await work(pool)
    finally:
        await pool.close()


def _run(
    work: Callable[[KeysTransaction, use_cases.SecretTools, Meta], Awaitable[use_cases.Outcome]],
    actor: Actor | None = None,
) -> use_cases.Outcome:
    tools = secret_tools(load_settings(KeysSettings))
    meta = Meta(
        actor=actor or _operator(),
        occurred_at=datetime.now(UTC),
        correlation_id=f"cli:{uuid.uuid4()}",
    )

    async def go(pool: Any) -> use_cases.Outcome:
        uow = KeysUnitOfWork(lambda: pool)
        return await use_cases.in_transaction(uow, lambda tx: work(tx, tools, meta))

    try:
        return asyncio.run(_with_pool(go))
    except DomainError as error:
        console.print(f"[red]{error.code}[/red]: {error.message}")
        raise typer.Exit(1) from None


def _show(outcome: use_cases.Outcome, as_json: bool) -> None:
    view = KeyView.of(outcome.key).model_dump(mode="json")
    if outcome.secret is not None:
        view["key"] = outcome.secret.plaintext
    if as_json:
        typer.echo(json.dumps(view, indent=2))
        return
    for name in ("id", "name", "environment", "status", "prefix", "scopes", "version"):
        typer.echo(f"{name:12} {view[name]}")
    for name in (*LIMIT_NAMES, "allowed_cidrs"):
        if view[name]:
            typer.echo(f"{name:12} {view[name]}")
    if outcome.secret is not None:
        typer.echo(outcome.secret.plaintext)  # alone on the last line, for scripts


@app.command("admin-key")
def admin_key(
    account: Annotated[str, typer.Argument(help="Account to bootstrap.")], name: str = "Admin key"
) -> None:
    """Create a key with every scope for ACCOUNT; the secret alone on the last line."""
    attributes = KeyAttributes(
        name=name,
        description="Bootstrap key with every platform scope.",
        scopes=list(ALL_PLATFORM_SCOPES),
    )
    outcome = _run(
        lambda tx, tools, meta: use_cases.create(tx, tools, account, attributes, meta),
        actor=Actor(type="system", id="keys-admin-bootstrap"),
    )
    _show(outcome, as_json=False)


@app.command()
def create(
    account: Account,
    name: Annotated[str, typer.Option(help="Key name.")],
    description: str | None = None,
    environment: str = "production",
    scope: Annotated[list[str] | None, typer.Option(help="Repeat for several.")] = None,
    canary: Annotated[
        bool, typer.Option("--canary", help="A decoy: never valid, every use alerts.")
    ] = False,
    per_minute: PerMinute = None,
    per_hour: PerHour = None,
    per_day: PerDay = None,
    token_budget: Budget = None,
    allow_cidr: AllowCidr = None,
    as_json: AsJson = False,
) -> None:
    """Create a key; prints it with its secret."""
    attributes = _checked(
        KeyAttributes,
        {
            "name": name,
            "description": description,
            "environment": environment,
            "scopes": scope or [],
            "canary": canary,
            **_limits(per_minute, per_hour, per_day, token_budget, allow_cidr),
        },
    )
    _show(
        _run(lambda tx, tools, meta: use_cases.create(tx, tools, account, attributes, meta)),
        as_json,
    )


@app.command("set-limits")
def set_limits(
    key_id: uuid.UUID,
    account: Account,
    per_minute: PerMinute = None,
    per_hour: PerHour = None,
    per_day: PerDay = None,
    token_budget: Budget = None,
    allow_cidr: AllowCidr = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(help="A limit to remove (e.g. rate_limit_per_day, allowed_cidrs); repeat."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Change a key's limits; the options given change, the others stay as they are."""
    given = {
        name: value
        for name, value in _limits(per_minute, per_hour, per_day, token_budget, allow_cidr).items()
        if value is not None and value != []
    }
    for name in clear or []:
        given[name] = [] if name == "allowed_cidrs" else None
    patch = _checked(KeyPatch, given)
    _show(
        _run(lambda tx, _, meta: use_cases.update(tx, account, key_id, patch, meta)),
        as_json,
    )


@app.command("list")
def list_keys(account: Account, as_json: AsJson = False) -> None:
    """The account's keys, newest first."""
    rows = asyncio.run(_with_pool(lambda pool: queries.list_keys(pool, account, 1000, None, None)))
    views = [KeyView.of(k, used).model_dump(mode="json") for k, used in rows]
    if as_json:
        typer.echo(json.dumps(views, indent=2))
        return
    table = Table("id", "name", "environment", "status", "prefix", "created")
    for v in views:
        table.add_row(
            v["id"], v["name"], v["environment"], v["status"], v["prefix"], v["created_at"]
        )
    console.print(table)


@app.command()
def show(key_id: uuid.UUID, account: Account, as_json: AsJson = False) -> None:
    """One key."""
    found = asyncio.run(_with_pool(lambda pool: queries.get_key(pool, account, key_id)))
    if found is None:
        console.print(f"[red]not_found[/red]: no key {key_id} in account {account}")
        raise typer.Exit(1)
    _show(use_cases.Outcome(found[0], []), as_json)


@app.command()
def disable(
    key_id: uuid.UUID,
    account: Account,
    reason: str = "Disabled by an operator",
    as_json: AsJson = False,
) -> None:
    """Disable a key (refused until enabled again)."""
    _show(_run(lambda tx, _, meta: use_cases.disable(tx, account, key_id, reason, meta)), as_json)


@app.command()
def enable(
    key_id: uuid.UUID, account: Account, reason: str | None = None, as_json: AsJson = False
) -> None:
    """Enable a disabled key."""
    _show(_run(lambda tx, _, meta: use_cases.enable(tx, account, key_id, reason, meta)), as_json)


@app.command()
def rotate(
    key_id: uuid.UUID,
    account: Account,
    grace_period_seconds: int = 0,
    end_grace_when_quiet_seconds: int | None = None,
    as_json: AsJson = False,
) -> None:
    """Give the key a new secret (printed); the old one works until the grace period ends
    (or, with --end-grace-when-quiet-seconds, once nobody used it for that long)."""
    checked = _checked(
        RotateKeyData,
        {
            "grace_period_seconds": grace_period_seconds,
            "end_grace_when_quiet_seconds": end_grace_when_quiet_seconds,
        },
    )
    _show(
        _run(
            lambda tx, tools, meta: use_cases.rotate(
                tx,
                tools,
                account,
                key_id,
                checked.grace_period_seconds,
                meta,
                checked.end_grace_when_quiet_seconds,
            )
        ),
        as_json,
    )


@app.command()
def revoke(
    key_id: uuid.UUID, account: Account, reason: str | None = None, as_json: AsJson = False
) -> None:
    """Revoke a key for good; its stored secret is destroyed."""
    _show(_run(lambda tx, _, meta: use_cases.revoke(tx, account, key_id, reason, meta)), as_json)


@app.command("rebuild-projections")
def rebuild_projections() -> None:
    """Drop the read models and replay every event into them."""
    with Progress(console=console) as progress:
        task = progress.add_task("replaying events", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        replayed = asyncio.run(_with_pool(lambda pool: projections.rebuild(pool, report)))
    console.print(f"rebuilt the read models from {replayed} events")


if __name__ == "__main__":
    app()
