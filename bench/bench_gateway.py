"""Gateways (issue 13): what forward auth costs nginx, and the in-process library.

**gateway_forward_auth**: Debian's nginx, started as `make gateway` starts it, in front of
the sample model API; `wrk` (a native load generator, not Python) drives, for
`DURATION_S` each with `CONNECTIONS` connections: nginx's own static answer (wrk's and
nginx's ceiling on this machine), nginx proxying to the sample API without auth (the
baseline), and the same through forward auth to the keys service with a valid key (each
request also reported on usage.records). The figures: requests per second and p50/p99,
the ratio to the baseline and the latency forward auth adds.

**gateway_library**: the `instagen_gateway.Verifier` of a gateway process, against the
stack: verifications per second on a cache hit, in process, on one core (CPU time), for
a key without limits and for one with every kind of limit; then, for N keys, the time
from a disable acknowledged by the keys service until the library refuses the key.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from typing import Final

import httpx
from instagen_gateway import Verifier

from bench import keys_support as ks
from bench.harness import BenchContext, Figure, benchmark
from devstack import gateway as local_gateway
from devstack import services as devstack_services

DURATION_S: Final = 10
CONNECTIONS: Final = 32
HIT_LOOPS: Final = 1_000_000
REVOCATIONS: Final = 100


@benchmark("gateway_forward_auth")
async def gateway_forward_auth(ctx: BenchContext) -> list[Figure]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is missing: apt-get install wrk (make bench installs it)")
    stack = ks.endpoints(ctx.bootstrap)
    duration = ctx.scale(DURATION_S, 3)
    await asyncio.to_thread(local_gateway.start, stack.kafka, stack.server_url)
    await local_gateway.wait_ready()
    async with ks.bench_account(stack, "gateway") as account:
        async with httpx.AsyncClient(base_url=_keys_url(), headers=account.headers) as http:
            created = await http.post("/v1/keys", json={"name": "bench-gateway"})
            if created.status_code != 201:
                raise RuntimeError(f"create key: {created.status_code} {created.text[:200]}")
            secret = created.json()["key"]
        gateway = local_gateway.gateway_url()
        bare = f"http://127.0.0.1:{local_gateway.BARE_PORT}"
        ceiling = await _wrk(wrk, f"{gateway}/gateway/health", duration)
        baseline = await _wrk(wrk, f"{bare}/v1/generate", duration)
        authorized = await _wrk(wrk, f"{gateway}/v1/generate", duration, secret)
    ctx.note(
        duration_s=duration,
        connections=CONNECTIONS,
        wrk_threads=1,
        ceiling=ceiling,
        baseline=baseline,
        forward_auth=authorized,
    )
    return [
        Figure(
            "forward_auth_rps",
            authorized["rps"],
            "req/s",
            baseline=baseline["rps"],
            baseline_of="gateway_forward_auth/nginx_alone_rps",
        ),
        Figure("nginx_alone_rps", baseline["rps"], "req/s"),
        Figure("nginx_static_rps", ceiling["rps"], "req/s"),
        Figure("added_p50_ms", authorized["p50_ms"] - baseline["p50_ms"], "ms", better="lower"),
        Figure("added_p99_ms", authorized["p99_ms"] - baseline["p99_ms"], "ms", better="lower"),
        Figure("forward_auth_non_2xx", authorized["non_2xx"], "responses", better="lower"),
    ]


async def _wrk(wrk: str, url: str, duration: int, key: str | None = None) -> dict[str, float]:
    args = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency", url]
    if key is not None:
        args[1:1] = ["-H", f"Authorization: Bearer {key}"]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out = (await proc.communicate())[0].decode()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {out[-500:]}")
    return _parse_wrk(out)


_UNITS: Final = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _parse_wrk(out: str) -> dict[str, float]:
    def latency(pct: str) -> float:
        found = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if found is None:
            raise RuntimeError(f"no {pct}% latency in wrk's output: {out[-500:]}")
        return float(found.group(1)) * _UNITS[found.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk's output: {out[-500:]}")
    return {
        "rps": float(rps.group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


@benchmark("gateway_library")
async def gateway_library(ctx: BenchContext) -> list[Figure]:
    stack = ks.endpoints(ctx.bootstrap)
    loops = ctx.scale(HIT_LOOPS, 100_000)
    count = ctx.scale(REVOCATIONS, 10)
    async with (
        ks.bench_account(stack, "library") as account,
        httpx.AsyncClient(base_url=_keys_url(), headers=account.headers, timeout=10) as http,
        Verifier(_keys_url(), account.admin_key or "", ctx.bootstrap) as verifier,
    ):
        plain = await _create(http, {})
        limited = await _create(
            http,
            {
                "rate_limit_per_minute": 10**9,
                "rate_limit_per_hour": 10**9,
                "rate_limit_per_day": 10**9,
                "token_budget": {"tokens": 10**12, "period": "month"},
                "allowed_cidrs": ["127.0.0.0/8"],
            },
        )
        hit_plain = await _hits(verifier, plain, loops, None)
        hit_limited = await _hits(verifier, limited, loops // 5, "127.0.0.1")
        revocations = [await _revocation(http, verifier) for _ in range(count)]
    ms = [s * 1000 for s in revocations]
    ctx.note(loops=loops, revocations=count)
    return [
        Figure("cache_hit_per_s_one_core", hit_plain, "verifications/s", target=500_000),
        Figure("cache_hit_with_limits_per_s_one_core", hit_limited, "verifications/s"),
        Figure("revocation_p99_ms", ks.percentile(ms, 99), "ms", target=250, better="lower"),
        Figure("revocation_p50_ms", ks.percentile(ms, 50), "ms", better="lower"),
    ]


async def _create(http: httpx.AsyncClient, attributes: dict[str, object]) -> str:
    created = await http.post("/v1/keys", json={"name": "bench-library", **attributes})
    if created.status_code != 201:
        raise RuntimeError(f"create key: {created.status_code} {created.text[:200]}")
    return str(created.json()["key"])


async def _hits(verifier: Verifier, secret: str, loops: int, source_ip: str | None) -> float:
    """Cache hits per CPU second: the first verification fills the cache, then the loop."""
    if not (await verifier.verify(secret, source_ip=source_ip)).valid:
        raise RuntimeError("the benchmark's key is not valid")
    hit = verifier.verify_cached
    began = time.process_time()
    for _ in range(loops):
        hit(secret, source_ip)
    return loops / (time.process_time() - began)


async def _revocation(http: httpx.AsyncClient, verifier: Verifier) -> float:
    created = await http.post("/v1/keys", json={"name": "bench-revocation"})
    body = created.json()
    if not (await verifier.verify(body["key"])).valid:
        raise RuntimeError("a new key is not valid")
    answer = await http.post(f"/v1/keys/{body['id']}/disable", json={"reason": "bench"})
    t0 = time.perf_counter()
    if answer.status_code != 200:
        raise RuntimeError(f"disable: {answer.status_code}")
    while (verdict := verifier.verify_cached(body["key"])) is None or verdict.valid:
        if time.perf_counter() - t0 > 10:
            raise RuntimeError("the library never refused the disabled key")
        await asyncio.sleep(0.001)
    return time.perf_counter() - t0


def _keys_url() -> str:
    return next(s.url for s in devstack_services.SERVICES if s.name == "keys")
