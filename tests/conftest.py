"""Shared fixtures: the real stack, and clients for its broker, databases and services."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account, new_account
from tests.support.stack import Stack, start_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked runs_last (the secrets scan) go after all others; the rest keep their
    order."""
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[Stack]:
    running = await start_stack()
    yield running
    running.close()


@pytest.fixture(scope="session")
async def producer(stack: Stack) -> AsyncIterator[KafkaProducer]:
    """The project's own producer, as the services use it."""
    kafka_producer = KafkaProducer(stack.kafka, client_id="instagen-tests")
    await kafka_producer.start()
    yield kafka_producer
    await kafka_producer.stop()


@pytest.fixture(scope="session")
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[dict[str, asyncpg.Connection]]:
    """One connection to each service's database, for checking effects."""
    conns = {
        name: await asyncpg.connect(stack.database(name)) for name in ("keys", "audit", "usage")
    }
    yield conns
    for conn in conns.values():
        await conn.close()


@pytest.fixture
async def account(stack: Stack) -> Account:
    """A fresh account with an admin key (every scope)."""
    return await new_account(stack)


@pytest.fixture
async def api(account: Account) -> AsyncIterator[httpx.AsyncClient]:
    """The keys service's HTTP API, authenticated as the fresh account's admin key."""
    async with account.client() as client:
        yield client
