"""`python -m devstack up|down|clean|status`: the local stack behind the Makefile."""

from __future__ import annotations

import asyncio
import logging
import time

import typer

from devstack import gateway as local_gateway
from devstack import kafka, paths, postgres, services, stack

DEMO_ACCOUNT = "demo"

# While the broker starts, aiokafka logs every refused connection; the wait loop reports.
logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def up(infra_only: bool = typer.Option(False, help="Kafka and PostgreSQL only.")) -> None:
    """Start whatever is not running and wait until every part answers."""
    began = time.monotonic()
    ends = stack.endpoints_from_env()
    asyncio.run(stack.up_infra(ends))
    if not infra_only:
        asyncio.run(stack.up_services(ends))
    started = ", ".join(ends.started) or "nothing (all was running)"
    typer.echo(f"started: {started} in {time.monotonic() - began:.1f}s")
    typer.echo(f"kafka:    {ends.kafka}")
    typer.echo(f"postgres: {ends.database_url.rsplit('@', 1)[-1]}")
    if not infra_only:
        for service in services.SERVICES:
            typer.echo(f"{service.name + ':':9} {service.url}  (docs {service.url}/docs)")
        keys_url = next(s.url for s in services.SERVICES if s.name == "keys")
        typer.echo(f"console:  {keys_url}/console  (sign in with the admin key below)")
        secret = services.demo_admin_key(DEMO_ACCOUNT, ends.kafka, ends.database_url)
        typer.echo(
            f"admin key of account {DEMO_ACCOUNT} (kept in {paths.admin_key_file(DEMO_ACCOUNT)}):"
        )
        typer.echo(secret)


@app.command()
def gateway() -> None:
    """Start nginx (forward auth to the keys service) in front of the sample model API."""
    ends = stack.endpoints_from_env()
    started = local_gateway.start(ends.kafka, ends.database_url)
    asyncio.run(local_gateway.wait_ready())
    typer.echo(f"started: {', '.join(started) or 'nothing (all was running)'}")
    typer.echo(f"gateway:    {local_gateway.gateway_url()}  (nginx, forward auth to keys)")
    typer.echo(f"sample API: {local_gateway.sample_api_url()}  (behind it)")
    typer.echo(
        f"try: curl -H 'Authorization: Bearer <key>' {local_gateway.gateway_url()}/v1/generate"
    )


@app.command("admin-key")
def admin_key(account: str) -> None:
    """Create a key with every scope for ACCOUNT; prints it alone on the last line."""
    ends = stack.endpoints_from_env()
    typer.echo(services.create_admin_key(account, ends.kafka, ends.database_url).rstrip())


@app.command()
def down() -> None:
    """Stop everything `up` started; data stays."""
    stopped = stack.down()
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def clean() -> None:
    """`down`, then remove local data, logs and pid files (the jar cache stays)."""
    stack.clean()
    typer.echo("stopped and removed local data")


@app.command()
def status() -> None:
    """Which parts of the local stack run, with their pids."""
    for name, proc in (
        [("kafka", kafka.BROKER), ("postgres", postgres.SERVER)]
        + [(s.name, s.process) for s in services.SERVICES]
        + [("nginx", local_gateway.NGINX), ("sample-api", local_gateway.SAMPLE_API)]
    ):
        pid = proc.pid()
        typer.echo(f"{name:9} {'running pid ' + str(pid) if pid else 'stopped'}")


@app.command("fetch-kafka")
def fetch_kafka() -> None:
    """Download the broker's jars from Maven Central into .cache (once)."""
    typer.echo("downloaded" if kafka.fetch_jars() else "already cached")
