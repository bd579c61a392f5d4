"""How a service that is not the keys service knows who calls it: the keys service's
whoami, asked once per key and briefly remembered, forgotten as soon as the key changes."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord

from contracts import EVENT_TYPE_HEADER, KEYS_EVENTS
from servicekit.callers import CallerDirectory, key_change_subscription
from servicekit.consumer import Received
from servicekit.errors import ApiError
from tests.support.wait import wait_until

KEY_ID = uuid.uuid4()
GOOD, BAD = "ig_live_good-secret", "ig_live_bad-secret"


@dataclass
class KeysService:
    """A stand-in for GET /v1/whoami: counts the questions, answers as told."""

    status: int = 200
    scopes: list[str] = field(default_factory=lambda: ["audit:read"])
    asked: int = 0
    gate: asyncio.Event | None = None

    async def holding(self) -> bool:
        """A question has arrived (and waits at the gate, if there is one)."""
        return self.asked > 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.asked += 1
        if self.gate is not None:
            await self.gate.wait()
        if request.headers["authorization"] != f"Bearer {GOOD}":
            return httpx.Response(401, json={"error": {"code": "unauthenticated"}})
        if self.status != 200:
            return httpx.Response(self.status)
        body = {
            "key_id": str(KEY_ID),
            "account_id": "acme",
            "environment": "production",
            "scopes": self.scopes,
        }
        return httpx.Response(200, json=body)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys() -> KeysService:
    return KeysService()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def directory(keys: KeysService, clock: Clock) -> AsyncIterator[CallerDirectory]:
    found = CallerDirectory(
        "http://keys.test",
        ttl=30,
        refusal_ttl=5,
        transport=httpx.MockTransport(keys.handle),
        clock=clock,
    )
    await found.start()
    yield found
    await found.stop()


async def _status(call: Callable[[], Any]) -> int:
    try:
        await call()
    except ApiError as error:
        return error.status
    return 200


async def test_a_key_is_asked_about_once_then_remembered_for_the_ttl(
    directory: CallerDirectory, keys: KeysService, clock: Clock
) -> None:
    caller = await directory.authenticate(f"Bearer {GOOD}", "audit:read")
    assert (caller.key_id, caller.account_id) == (KEY_ID, "acme")
    await directory.authenticate(f"Bearer {GOOD}", "audit:read")
    assert keys.asked == 1
    clock.now += 31
    await directory.authenticate(f"Bearer {GOOD}")
    assert keys.asked == 2


async def test_the_cache_holds_a_digest_of_the_token_never_the_token(
    directory: CallerDirectory,
) -> None:
    await directory.authenticate(f"Bearer {GOOD}")
    remembered = vars(directory)["_cache"]
    assert list(remembered) == [hashlib.sha256(GOOD.encode()).digest()]
    assert GOOD not in repr(vars(directory))


async def test_a_refused_key_is_refused_without_asking_for_a_while(
    directory: CallerDirectory, keys: KeysService, clock: Clock
) -> None:
    for _ in range(3):
        assert await _status(lambda: directory.authenticate(f"Bearer {BAD}")) == 401
    assert keys.asked == 1
    clock.now += 6
    assert await _status(lambda: directory.authenticate(f"Bearer {BAD}")) == 401
    assert keys.asked == 2


async def test_a_missing_or_malformed_header_is_refused_without_asking(
    directory: CallerDirectory, keys: KeysService
) -> None:
    for header in (None, "", "Basic abc", "Bearer ", f"Bearer {'x' * 600}"):
        assert await _status(lambda h=header: directory.authenticate(h)) == 401  # type: ignore[misc]
    assert keys.asked == 0


async def test_a_key_without_the_scope_is_forbidden(
    directory: CallerDirectory, keys: KeysService
) -> None:
    keys.scopes = ["keys:manage"]
    assert await _status(lambda: directory.authenticate(f"Bearer {GOOD}", "audit:read")) == 403


async def test_when_the_keys_service_fails_the_caller_is_told_to_retry_and_nothing_is_kept(
    directory: CallerDirectory, keys: KeysService
) -> None:
    keys.status = 500
    assert await _status(lambda: directory.authenticate(f"Bearer {GOOD}")) == 503
    keys.status = 200
    await directory.authenticate(f"Bearer {GOOD}")
    assert keys.asked == 2


async def test_concurrent_requests_with_one_key_ask_once(
    directory: CallerDirectory, keys: KeysService
) -> None:
    keys.gate = asyncio.Event()
    waiting = [asyncio.create_task(directory.authenticate(f"Bearer {GOOD}")) for _ in range(20)]
    await wait_until(keys.holding, timeout=5, interval=0.001, what="whoami asked")
    keys.gate.set()
    callers = await asyncio.gather(*waiting)
    assert keys.asked == 1 and {c.key_id for c in callers} == {KEY_ID}


async def test_a_changed_key_is_forgotten_at_once(
    directory: CallerDirectory, keys: KeysService
) -> None:
    await directory.authenticate(f"Bearer {GOOD}")
    directory.forget_key(KEY_ID)
    await directory.authenticate(f"Bearer {GOOD}")
    assert keys.asked == 2


async def test_an_answer_that_arrives_after_its_key_changed_is_not_kept(
    directory: CallerDirectory, keys: KeysService
) -> None:
    keys.gate = asyncio.Event()
    asking = asyncio.create_task(directory.authenticate(f"Bearer {GOOD}"))
    await wait_until(keys.holding, timeout=5, interval=0.001, what="whoami asked")
    directory.forget_key(str(KEY_ID))  # e.g. revoked while whoami was answering
    keys.gate.set()
    await asking
    await directory.authenticate(f"Bearer {GOOD}")
    assert keys.asked == 2


def _event(key_id: uuid.UUID, event_type: str) -> Received[bytes]:
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        KEYS_EVENTS, 0, 0, 0, 0, str(key_id).encode(), b"{}", None, 36, 2,
        [(EVENT_TYPE_HEADER, event_type.encode())],
    )  # fmt: skip
    return Received(record, b"{}")


async def test_key_events_make_every_process_forget_the_changed_keys(
    directory: CallerDirectory, keys: KeysService
) -> None:
    listener = key_change_subscription(directory)
    assert listener.group_id is None  # every process reads every event
    await directory.authenticate(f"Bearer {GOOD}")
    assert await _status(lambda: directory.authenticate(f"Bearer {BAD}")) == 401
    await listener.handle([_event(uuid.uuid4(), "KeyUpdated")])
    await directory.authenticate(f"Bearer {GOOD}")
    assert keys.asked == 2  # another key's change: still cached
    await listener.handle([_event(KEY_ID, "KeyDisabled")])
    await directory.authenticate(f"Bearer {GOOD}")
    assert keys.asked == 3
    await listener.handle([_event(uuid.uuid4(), "KeyEnabled")])  # refusals may be stale now
    assert await _status(lambda: directory.authenticate(f"Bearer {BAD}")) == 401
    assert keys.asked == 4
