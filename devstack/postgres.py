"""The real PostgreSQL server from the system's binaries, one database per service."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import asyncpg

from devstack import paths
from devstack.procs import Managed, as_user

SERVER = Managed("postgres")
HOST = "127.0.0.1"
PORT = int(os.environ.get("POSTGRES_PORT", "5432"))
USER = "instagen"
PASSWORD = "instagen"  # noqa: S105 - local development server bound to loopback only
DATABASES = ("keys", "audit", "usage")
_OS_USER = "postgres"  # initdb and postgres refuse to run as root


def server_url(database: str = "postgres") -> str:
    return f"postgresql://{USER}:{PASSWORD}@{HOST}:{PORT}/{database}"


def _bindir() -> Path:
    override = os.environ.get("PG_BIN")
    if override:
        return Path(override)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if candidates:
        return candidates[-1]
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True)
        return _bindir()
    raise SystemExit("postgres: no server binaries found; install postgresql (15+) or set PG_BIN")


def _run_as() -> str | None:
    """As root, the server runs as the `postgres` OS user (created if missing)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", _OS_USER], check=True)
    return _OS_USER


def _let_server_reach(path: Path, user: str | None) -> None:
    """As root, the server runs as another user, who must be able to walk down to its data
    directory: a folder above it made with mode 0700 (e.g. by `mktemp -d`) gets the
    search bit for others (o+x: enter, not list)."""
    if user is None:
        return
    for folder in reversed(path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def init_cluster() -> bool:
    """initdb once, with password auth on loopback. True if it created the cluster."""
    data = paths.POSTGRES_DATA
    if (data / "PG_VERSION").exists():
        return False
    user = _run_as()
    data.mkdir(parents=True, exist_ok=True)
    _let_server_reach(data, user)
    data.chmod(0o700)
    _chown(data, user)
    with tempfile.NamedTemporaryFile("w", delete=False, suffix=".pw") as pw:
        pw.write(PASSWORD + "\n")
    os.chmod(pw.name, 0o644)
    try:
        subprocess.run(
            [
                str(_bindir() / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={pw.name}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            **as_user(user),
        )
    finally:
        os.unlink(pw.name)
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# instagen local stack\n"
            f"listen_addresses = '{HOST}'\nport = {PORT}\nunix_socket_directories = ''\n"
            "max_connections = 300\nshared_buffers = 256MB\n"
            "log_min_messages = warning\nlog_min_error_statement = error\n"
        )
    return True


def start() -> bool:
    if SERVER.running():
        return False
    init_cluster()
    _let_server_reach(paths.POSTGRES_DATA, _run_as())
    SERVER.start(
        [str(_bindir() / "postgres"), "-D", str(paths.POSTGRES_DATA)],
        user=_run_as(),
        cwd=paths.POSTGRES_DATA,
    )
    return True


def stop() -> bool:
    # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
    return SERVER.stop(timeout=60, sig=signal.SIGINT)


async def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            conn = await asyncpg.connect(url, timeout=5)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            last = exc
        else:
            await conn.close()
            return
        if SERVER.pid_file.exists() and not SERVER.running():
            raise SystemExit(f"postgres: the server exited; see {SERVER.log_file}")
        await asyncio.sleep(0.3)
    raise SystemExit(f"postgres: no answer within {timeout:.0f}s ({last})")


async def create_databases(url: str, names: tuple[str, ...] = DATABASES) -> list[str]:
    """Create the services' databases that are missing on the server behind `url`."""
    conn = await asyncpg.connect(url)
    try:
        existing = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        created = [n for n in names if n not in existing]
        for name in created:
            await conn.execute(f'CREATE DATABASE "{name}"')
        return created
    finally:
        await conn.close()
