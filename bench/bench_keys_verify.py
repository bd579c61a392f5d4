"""keys_verify: `POST /v1/verify` over HTTP on loopback against one keys process.

The benchmark starts its own keys processes on free ports (the stack's broker and
database, the stack's pepper), creates a bench account with 100 keys, and drives each
process with the load generator of `bench.keys_support`: a separate process (uvloop,
raw asyncio protocol) with many keep-alive connections, one request in flight on each,
every request serialised before the clock starts. The mix: 90 % valid keys drawn from
the 100, 10 % well-formed keys that do not exist (a pool of 100, so the negative cache
sees repeats, as it would from a misconfigured client).

In one run, each after a warm-up:
1. the load generator against a raw asyncio server (one canned answer): its own ceiling;
2. the same request against a bare ASGI callable under uvicorn with the services' server
   settings (uvloop, httptools, no access log): the floor of the services' HTTP stack;
3. `GET /health` of the keys process (cache on): FastAPI and the servicekit middlewares;
4. `POST /v1/verify`, cache on: the figure with the 5,000/s target, and its share of step
   2's rate (the issue's >= 60 % of the bare ASGI app). A verification both of whose keys
   are in the cache is answered by the server's protocol, before ASGI
   (servicekit.fast_http); the rest of the process's requests go through ASGI;
5. `POST /v1/verify`, cache on, against 100 other keys of the same process that each carry
   every kind of limit (rates per minute, hour and day, a token budget, three networks;
   high enough never to refuse here), the client inside one network: the cost of
   deciding limits (docs/limits.md), target >= 90 % of step 4;
6. `POST /v1/verify` against a second process started with KEYS_HTTP_FAST_ANSWERS=false:
   every verification through ASGI (`VerifyFastPath`), the way before the protocol
   answered them;
7. `POST /v1/verify` against a third process started with KEYS_VERIFY_CACHE_ENABLED=false
   (a database lookup per verification, and one for the bearer key): the ratio.

Every verification sends the client's `source_ip`, as a gateway does.

The machine has 2 cores: the load generator takes one of them while it runs, so the
server (one Python process, one core at most) shares the rest with Kafka and PostgreSQL.
`params` has each phase's CPU use of the server and of the client.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from bench import keys_support as ks
from bench.harness import BenchContext, Figure, benchmark
from services.keys.domain.secret import generate_secret

POOL_KEYS: Final = 100
UNKNOWN_KEYS: Final = 100
UNKNOWN_SHARE: Final = 0.10
CONNECTIONS: Final = 64
MIX_LENGTH: Final = 5_000
"""Requests in the prepared cycle the connections take turns on."""
SEED: Final = 20_26
SOURCE_IP: Final = "203.0.113.9"
ALL_LIMITS: Final = {
    "rate_limit_per_minute": 10**9,
    "rate_limit_per_hour": 10**9,
    "rate_limit_per_day": 10**9,
    "token_budget": {"tokens": 10**15, "period": "month"},
    "allowed_cidrs": ["10.0.0.0/8", "203.0.113.0/24", "2001:db8::/32"],
}
"""Every kind of limit, each far above what a run sends: all checked, none reached."""


@benchmark("keys_verify")
async def keys_verify(ctx: BenchContext) -> list[Figure]:
    duration = ctx.scale(15, 4)
    warmup = ctx.scale(3, 1)
    ctx.note(
        pool_keys=POOL_KEYS,
        unknown_keys=UNKNOWN_KEYS,
        unknown_share=UNKNOWN_SHARE,
        connections=CONNECTIONS,
        duration_s=duration,
        warmup_s=warmup,
        load_generator="bench.keys_support loadgen: separate process, uvloop, raw HTTP/1.1",
        cpu_note="2 cores: the load generator and the server share them (with Kafka, PostgreSQL)",
    )
    stack = ks.endpoints(ctx.bootstrap)
    with ks.workdir("keys-verify") as work:
        async with ks.bench_account(stack, "verify") as account:
            return await _run(ctx, stack, work, account, duration, warmup)


async def _run(
    ctx: BenchContext,
    stack: ks.StackEndpoints,
    work: Path,
    account: ks.BenchAccount,
    duration: float,
    warmup: float,
) -> list[Figure]:
    async def load(
        name: str, port: int, pid: int | None, requests: list[ks.LoadRequest]
    ) -> dict[str, Any]:
        spec = ks.LoadSpec(port, CONNECTIONS, warmup, duration, requests, server_pid=pid)
        report = await ks.run_loadgen(spec, work, name)
        ctx.note(**{name: _rounded(report)})
        if report["errors"] or report["unexpected"] or report["lost_connections"]:
            raise RuntimeError(f"{name}: wrong answers under load: {report}")
        return report

    health = [ks.LoadRequest("health", b"", b'"ok"')]
    async with ks.trivial_server("echo-server") as (port, pid):
        health_raw = ks.http_request("GET", "/health", port, {})
        ceiling = await load("client_ceiling", port, pid, [_with_raw(health[0], health_raw)])
    async with ks.trivial_server("asgi-server") as (port, pid):
        health_raw = ks.http_request("GET", "/health", port, {})
        floor = await load("bare_asgi", port, pid, [_with_raw(health[0], health_raw)])

    async with ks.keys_process(stack, work, "keys-cache-on") as server:
        keys = await ks.create_keys_http(server.url, account, POOL_KEYS, "bench-verify")
        limited_keys = await ks.create_keys_http(
            server.url, account, POOL_KEYS, "bench-verify-limited", attributes=ALL_LIMITS
        )
        mix = _verify_mix(server.port, account, [k.secret for k in keys])
        limited_mix = _verify_mix(server.port, account, [k.secret for k in limited_keys])
        health_raw = ks.http_request("GET", "/health", server.port, {})
        trivial = await load("health", server.port, server.pid, [_with_raw(health[0], health_raw)])
        cached = await load("verify_cache_on", server.port, server.pid, mix)
        limited = await load("verify_limits", server.port, server.pid, limited_mix)

    async with ks.keys_process(
        stack, work, "keys-asgi-only", KEYS_HTTP_FAST_ANSWERS="false"
    ) as server:
        mix = _verify_mix(server.port, account, [k.secret for k in keys])
        through_asgi = await load("verify_asgi_only", server.port, server.pid, mix)

    async with ks.keys_process(
        stack, work, "keys-cache-off", KEYS_VERIFY_CACHE_ENABLED="false"
    ) as server:
        mix = _verify_mix(server.port, account, [k.secret for k in keys])
        uncached = await load("verify_cache_off", server.port, server.pid, mix)

    def fig(metric: str, value: float, unit: str, **kw: Any) -> Figure:
        return Figure(metric, value, unit, **kw)

    return [
        fig(
            "verify_per_s",
            cached["per_s"],
            "req/s",
            target=5_000,
            baseline=uncached["per_s"],
            baseline_of="keys_verify/verify_nocache_per_s",
        ),
        fig(
            "verify_share_of_bare_asgi",
            cached["per_s"] / floor["per_s"],
            "ratio",
            target=0.6,
        ),
        fig(
            "verify_asgi_only_per_s",
            through_asgi["per_s"],
            "req/s",
            baseline=cached["per_s"],
            baseline_of="keys_verify/verify_per_s",
        ),
        fig(
            "verify_asgi_only_cpu_us_per_req",
            through_asgi["server_cpu_us_per_request"],
            "us",
            better="lower",
        ),
        fig("verify_nocache_per_s", uncached["per_s"], "req/s"),
        fig(
            "verify_limits_per_s",
            limited["per_s"],
            "req/s",
            target=round(0.9 * cached["per_s"]),
            baseline=cached["per_s"],
            baseline_of="keys_verify/verify_per_s",
        ),
        fig(
            "verify_limits_cpu_us_per_req",
            limited["server_cpu_us_per_request"],
            "us",
            better="lower",
            baseline=cached["server_cpu_us_per_request"],
            baseline_of="keys_verify/verify_cpu_us_per_req",
        ),
        fig(
            "health_per_s",
            trivial["per_s"],
            "req/s",
            baseline=ceiling["per_s"],
            baseline_of="keys_verify/client_ceiling_per_s",
        ),
        fig("client_ceiling_per_s", ceiling["per_s"], "req/s"),
        fig(
            "bare_asgi_per_s",
            floor["per_s"],
            "req/s",
            baseline=ceiling["per_s"],
            baseline_of="keys_verify/client_ceiling_per_s",
        ),
        fig(
            "verify_p50_ms",
            cached["p50_ms"],
            "ms",
            better="lower",
            baseline=uncached["p50_ms"],
            baseline_of="keys_verify/verify_nocache_p50_ms",
        ),
        fig(
            "verify_p99_ms",
            cached["p99_ms"],
            "ms",
            better="lower",
            baseline=uncached["p99_ms"],
            baseline_of="keys_verify/verify_nocache_p99_ms",
        ),
        fig("verify_nocache_p50_ms", uncached["p50_ms"], "ms", better="lower"),
        fig("verify_nocache_p99_ms", uncached["p99_ms"], "ms", better="lower"),
        # CPU the server spent per answer: what caps one process, whatever else runs.
        fig(
            "verify_cpu_us_per_req",
            cached["server_cpu_us_per_request"],
            "us",
            better="lower",
            baseline=trivial["server_cpu_us_per_request"],
            baseline_of="keys_verify/health_cpu_us_per_req",
        ),
        fig(
            "health_cpu_us_per_req",
            trivial["server_cpu_us_per_request"],
            "us",
            better="lower",
            baseline=floor["server_cpu_us_per_request"],
            baseline_of="keys_verify/bare_asgi_cpu_us_per_req",
        ),
        fig("bare_asgi_cpu_us_per_req", floor["server_cpu_us_per_request"], "us", better="lower"),
    ]


def _with_raw(request: ks.LoadRequest, raw: bytes) -> ks.LoadRequest:
    return ks.LoadRequest(request.kind, raw, request.expect)


def _verify_mix(
    port: int, account: ks.BenchAccount, secrets: Sequence[str]
) -> list[ks.LoadRequest]:
    """The prepared cycle: valid keys and unknown well-formed ones, shuffled, seeded."""
    rng = random.Random(SEED)  # noqa: S311 - a reproducible mix, not a secret
    unknown = [generate_secret("production").plaintext for _ in range(UNKNOWN_KEYS)]
    requests = []
    for _ in range(MIX_LENGTH):
        if rng.random() < UNKNOWN_SHARE:
            kind, secret, expect = "unknown", rng.choice(unknown), b'"code":"not_found"'
        else:
            kind, secret, expect = "valid", rng.choice(secrets), b'"valid":true'
        raw = ks.http_request(
            "POST",
            "/v1/verify",
            port,
            account.headers,
            orjson.dumps({"key": secret, "source_ip": SOURCE_IP}),
        )
        requests.append(ks.LoadRequest(kind, raw, expect))
    return requests


def _rounded(report: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in report.items()}
