"""PostgreSQL: a pool, numbered plain-SQL migrations applied once, a readiness ping, and
integers sent as an array's text."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncpg

from servicekit.logging import get_logger

log = get_logger(__name__)
_MIGRATION_LOCK = 0x1A57_0001  # advisory lock id: instances starting together migrate in turn


async def create_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    wait: float = 60.0,
    role: str | None = None,
) -> Any:
    """Connect, retrying while the server is still starting (up to `wait` seconds).

    With `role`, every connection acts as that role from its first statement (it is set
    in the connection's startup parameters, so even `RESET ROLE` comes back to it): a
    service can work with fewer rights than the user that owns its tables.
    """
    deadline = asyncio.get_running_loop().time() + wait
    server_settings = {"role": role} if role else None
    while True:
        try:
            return await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                command_timeout=30,
                timeout=10,
                server_settings=server_settings,
                reset=_reset,
                # Cached statements expire by the cache's size only. An expiry is a timer,
                # and a timer keeps the context it was set in: the consumer's current
                # batch (FastStream's message), so each statement first prepared during a
                # batch held that whole batch for 300 s (the usage service: ~70 MB at
                # 100,000 keys, bench usage_memory).
                max_cached_statement_lifetime=0,
            )
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("database_unavailable_retrying", error=type(exc).__name__)
            await asyncio.sleep(1)


async def _reset(conn: Any) -> None:
    """On release to the pool. asyncpg's default runs `RESET ALL; UNLISTEN *; ...`, one
    round trip per release; the services set no session state on pooled connections
    (the publisher LISTENs on a connection of its own), so only an unfinished
    transaction needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def migrate(pool: Any, directory: Path) -> list[str]:
    """Apply the `NNN_name.sql` files not applied yet, in order, each in its own transaction.

    An applied file's checksum is kept; editing it afterwards is refused at start rather
    than silently ignored.
    """
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                r["name"]: r["checksum"]
                for r in await conn.fetch("SELECT * FROM schema_migrations")
            }
            for path, sql in _migration_files(directory):
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if path.name in done:
                    if done[path.name] != checksum:
                        raise RuntimeError(f"migration {path.name} changed after it was applied")
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                        path.name,
                        checksum,
                    )
                applied_now.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    if applied_now:
        log.info("migrations_applied", files=applied_now)
    return applied_now


def _migration_files(directory: Path) -> list[tuple[Path, str]]:
    """The numbered SQL files in order, read once (a few small files, at start)."""
    return [(p, p.read_text()) for p in sorted(directory.glob("[0-9][0-9][0-9]_*.sql"))]


async def ping(pool: Any) -> bool:
    try:
        async with asyncio.timeout(2):
            await pool.fetchval("SELECT 1")
    except Exception:  # any failure means "not ready"; /ready says so
        return False
    return True


def int_array(values: Iterable[int]) -> str:
    """An integer array as its text literal (`$n::text::bigint[]`): asyncpg checks every
    element of a binary array for nesting (~0.4 us each); the server parses integers
    about as fast."""
    return "{" + ",".join(map(str, values)) + "}"
