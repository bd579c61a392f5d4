"""keys_canary: what answering a canary key costs against answering an unknown key.

A canary must be refused exactly as an unknown key, in the same timing class: no I/O on
the answer path (its attempt is buffered and published later, as refusals are). Both are
timed through `verify_answer`, the endpoint's whole logic (bearer check, body parse,
verification, answer), in this process, with both answers cached as they are after the
first request of each; the baseline is the unknown key in the same run. Interleaved in
rounds, so drift of the machine falls on both alike.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Final, cast

import orjson

from bench.harness import BenchContext, Figure, benchmark
from services.keys.adapters.crypto import SecretHasher
from services.keys.app.activity import LastUsedTracker, RefusalReporter
from services.keys.app.context import KeysContext
from services.keys.app.limit_book import LimitBook
from services.keys.app.verification import KnownSecret, Verifier
from services.keys.domain.secret import generate_secret
from services.keys.entrypoints.verify import verify_answer

ROUND: Final = 1_000


async def _noop(*_: Any) -> None:
    return None


def _context(known: dict[bytes, KnownSecret], hasher: SecretHasher) -> KeysContext:
    async def lookup(digest: bytes) -> KnownSecret | None:
        return known.get(digest)

    verifier = Verifier(hasher, lookup, ttl=3600, negative_ttl=3600, max_entries=10_000)
    reporter = RefusalReporter(cast(Any, None), max_buffer=10_000)  # full: drops, never sends
    return KeysContext(
        cast(Any, None),
        cast(Any, None),
        verifier,
        reporter,
        LastUsedTracker(_noop),
        lambda: None,
        LimitBook(),
    )


@benchmark("keys_canary")
async def keys_canary(ctx: BenchContext) -> list[Figure]:
    rounds = ctx.scale(100, 10)
    hasher = SecretHasher(b"bench-pepper-" * 3)
    gateway, canary = generate_secret("production"), generate_secret("production")
    account = "bench"

    def known(secret: str, scopes: tuple[str, ...], is_canary: bool) -> tuple[bytes, KnownSecret]:
        entry = KnownSecret(
            uuid.uuid4(), account, "production", scopes, None, "active", None, None, is_canary
        )
        return hasher.digest(secret), entry

    keys = dict(
        [known(gateway.plaintext, ("keys:verify",), False), known(canary.plaintext, (), True)]
    )
    service = _context(keys, hasher)
    bearer = f"Bearer {gateway.plaintext}"
    context = {"source_ip": "198.51.100.7", "user_agent": "curl/8.5", "endpoint": "/v1/generate"}
    bodies = {
        "unknown": orjson.dumps({"key": generate_secret("production").plaintext, **context}),
        "canary": orjson.dumps({"key": canary.plaintext, **context}),
    }
    answers = {}
    for kind, body in bodies.items():  # the first of each fills the cache
        answers[kind] = await verify_answer(service, bearer, body, "127.0.0.1", "bench")
    if answers["canary"] != answers["unknown"]:
        raise AssertionError("a canary must be answered as an unknown key")

    spent = dict.fromkeys(bodies, 0.0)
    for _ in range(rounds):
        for kind, body in bodies.items():
            began = time.perf_counter()
            for _ in range(ROUND):
                await verify_answer(service, bearer, body, "127.0.0.1", "bench")
            spent[kind] += time.perf_counter() - began
    per = {kind: spent[kind] / (rounds * ROUND) * 1e6 for kind in bodies}
    ctx.note(answers_each=rounds * ROUND, round=ROUND, lookups=service.verifier.lookups)
    return [
        Figure("unknown_key_us", round(per["unknown"], 2), "us", None, "lower"),
        Figure("canary_key_us", round(per["canary"], 2), "us", None, "lower",
               round(per["unknown"], 2), "keys_canary/unknown_key_us"),
        Figure("canary_over_unknown", round(per["canary"] / per["unknown"], 2), "x", 1.2,
               "lower"),
    ]  # fmt: skip
