"""Operator CLI of the audit service: `python -m services.audit.cli --help`.

Works on the service's own database as the owner of its tables (AUDIT_DATABASE_URL or
DATABASE_URL), with the audit key (AUDIT_CHECKPOINT_KEY): verify every chain, sign the
chain heads now, apply retention. Exit status 1 when a chain is broken.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from servicekit import db
from servicekit.settings import load_settings
from services.audit.adapters.chain_reader import snapshot
from services.audit.adapters.checkpoint_store import CheckpointStore
from services.audit.app.checkpoints import sign_heads
from services.audit.app.retention import RetentionRefused, apply_retention
from services.audit.app.verification import verify_chain
from services.audit.bootstrap import MIGRATIONS, chain_key
from services.audit.domain.verification import Verdict
from services.audit.entrypoints.schemas import VerifyReport
from services.audit.settings import AuditSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
T = TypeVar("T")
OneAccount = Annotated[
    str | None, typer.Option("--account", "-a", help="Only this account's chain.")
]
_ALL_CHAINS = "SELECT account_id FROM audit_chain_heads ORDER BY account_id"
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _with_pool(work: Callable[[Any], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = load_settings(AuditSettings)
        pool = await asyncpg.create_pool(settings.service_database, min_size=1, max_size=2)
        try:
            await db.migrate(pool, MIGRATIONS)
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(run())


@app.command()
def verify(account: OneAccount = None, as_json: AsJson = False) -> None:
    """Recompute every chain (or one) and name the first broken record of each."""
    key = chain_key(load_settings(AuditSettings))

    async def work(pool: Any) -> list[Verdict]:
        verdicts = []
        async with snapshot(pool) as reader:
            chains = [account] if account else await reader.chains()
            with Progress(console=console, transient=True, disable=as_json) as progress:
                task = progress.add_task("verifying chains", total=len(chains))
                for chain in chains:
                    verdicts.append(await verify_chain(reader, key, chain))
                    progress.advance(task)
        return verdicts

    verdicts = _with_pool(work)
    if as_json:
        reports = [VerifyReport.of(v).model_dump(mode="json") for v in verdicts]
        typer.echo(json.dumps(reports, indent=2))
    else:
        table = Table("account", "records", "last seq", "checkpoint", "status")
        for v in verdicts:
            status = (
                "[green]valid[/green]" if v.broken is None else f"[red]{v.broken.message}[/red]"
            )
            signed = str(v.checkpoint.seq) if v.checkpoint else "-"
            table.add_row(v.account_id, str(v.records_checked), str(v.last_seq), signed, status)
        console.print(table)
    if any(v.broken is not None for v in verdicts):
        raise typer.Exit(1)


@app.command()
def checkpoint() -> None:
    """Sign every chain head that moved since its last checkpoint, now."""
    key = chain_key(load_settings(AuditSettings))
    signed = _with_pool(lambda pool: sign_heads(CheckpointStore(lambda: pool), key))
    console.print(f"signed {len(signed)} chain head(s)")


@app.command("apply-retention")
def apply_retention_command(
    days: Annotated[
        int | None,
        typer.Option(min=0, help="Keep this many days (default: AUDIT_RETENTION_DAYS)."),
    ] = None,
    account: OneAccount = None,
    dry_run: Annotated[bool, typer.Option(help="Say what would go; remove nothing.")] = False,
) -> None:
    """Remove whole chain segments recorded before the cutoff, up to a checkpoint.

    Each cut is anchored (signed) and recorded at the head of its chain as
    `retention.applied`; a segment that does not verify is kept and reported.
    """
    settings = load_settings(AuditSettings)
    key = chain_key(settings)
    cutoff = datetime.now(UTC) - timedelta(
        days=settings.audit_retention_days if days is None else days
    )

    async def work(pool: Any) -> int:
        cut = refused = untouched = 0
        async with pool.acquire() as conn:
            chains = (
                [account] if account else [r["account_id"] for r in await conn.fetch(_ALL_CHAINS)]
            )
            for chain in chains:
                try:
                    outcome = await apply_retention(conn, key, chain, cutoff, dry_run=dry_run)
                except RetentionRefused as refusal:
                    refused += 1
                    console.print(f"[red]{chain}: kept, it does not verify[/red]: {refusal}")
                    continue
                if outcome is None:
                    untouched += 1
                    continue
                cut += 1
                verb = "would remove" if dry_run else "removed"
                seg = outcome.segment
                console.print(
                    f"{chain}: {verb} records {seg.after_seq + 1}..{seg.through_seq}"
                    f" ({seg.count} records)"
                )
        console.print(
            f"{cut} chain(s) cut, {refused} kept as they do not verify,"
            f" {untouched} with nothing to remove (cutoff {cutoff.isoformat()})"
        )
        return refused

    if _with_pool(work):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
