"""`python -m services.usage.demo`: watch the usage service raise each kind of alert.

Creates a few keys of account `demo` through the keys API (with the admin key `make up`
keeps in .data/admin-key.demo), publishes realistic gateway traffic for them on
`usage.records` (simulated time: occurred_at in the past, so days pass in seconds), with
one anomaly per key, and prints the alerts as `GET /v1/alerts` shows them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from contracts import USAGE_RECORDS, UsageRecord
from servicekit.kafka import KafkaProducer

ROOT = Path(__file__).resolve().parents[2]
NETWORKS = ("203.0.113.", "198.51.100.")
Traffic = list[UsageRecord]


class Demo:
    def __init__(self, keys_url: str, admin_key: str) -> None:
        self.keys = httpx.AsyncClient(
            base_url=keys_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=15
        )
        self.rng = random.Random(4)  # noqa: S311 - made-up traffic
        self.now = datetime.now(UTC).replace(second=0, microsecond=0)

    async def key(self, name: str, **attributes: Any) -> dict[str, Any]:
        response = await self.keys.post("/v1/keys", json={"name": name, **attributes})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def traffic(
        self, key: dict[str, Any], minutes_ago: float, minutes: int, per_minute: int,
        status: int = 200, network: str = NETWORKS[0],
    ) -> Traffic:  # fmt: skip
        start = self.now - timedelta(minutes=minutes_ago)
        return [
            UsageRecord(
                record_id=uuid.uuid4(),
                key_id=key["id"],
                account_id=key["account_id"],
                occurred_at=start + timedelta(minutes=m, seconds=i * 60 / per_minute),
                source_ip=f"{network}{self.rng.randrange(2, 250)}",
                user_agent="instagen-python/2.4.1",
                endpoint=self.rng.choice(("/v1/generate", "/v1/images", "/v1/upscale")),
                model=self.rng.choice(("instagen-xl", "instagen-turbo")),
                status_code=status,
                tokens_in=self.rng.randrange(40, 600),
                tokens_out=self.rng.randrange(200, 2500),
                latency_ms=round(self.rng.uniform(80, 1800), 1),
            )
            for m in range(minutes)
            for i in range(per_minute)
        ]

    async def scenarios(self) -> list[tuple[str, Traffic, Callable[[], Any] | None]]:
        day = 24 * 60
        steady = await self.key("Demo web app (steady)", rate_limit_per_hour=5000)
        spike = await self.key("Demo chatbot (volume spike)")
        limited = await self.key("Demo batch job (rate limit 300/h)", rate_limit_per_hour=300)
        roaming = await self.key("Demo mobile backend (new network)")
        guessing = await self.key("Demo CI runner (auth failures)")
        leaked = await self.key("Demo old integration (disabled, still tried)")
        dormant = await self.key("Demo yearly report (dormant)")

        async def disable_then_try() -> None:
            await self.keys.post(f"/v1/keys/{leaked['id']}/disable", json={"reason": "leaked"})
            for _ in range(3):  # the secret is still out there: the keys service refuses it
                await self.keys.post("/v1/verify", json={"key": leaked["key"]})

        return [
            ("steady traffic, no alert", self.traffic(steady, 180, 170, 20), None),
            (
                "volume_spike",
                self.traffic(spike, 90, 60, 15) + self.traffic(spike, 29, 1, 400),
                None,
            ),
            (
                "rate_limit_exceeded",
                self.traffic(limited, 120, 50, 3) + self.traffic(limited, 40, 30, 12),
                None,
            ),
            (
                "new_source_network",
                self.traffic(roaming, 3 * day, 20, 4)
                + self.traffic(roaming, 2 * day, 20, 4)
                + self.traffic(roaming, 20, 3, 4, network=NETWORKS[1]),
                None,
            ),
            (
                "auth_failure_burst",
                self.traffic(guessing, 60, 30, 5) + self.traffic(guessing, 25, 1, 40, status=401),
                None,
            ),
            ("disabled_key_in_use", self.traffic(leaked, 60, 20, 5), disable_then_try),
            (
                "dormant_key_reactivated",
                self.traffic(dormant, 45 * day, 10, 3) + self.traffic(dormant, 10, 3, 3),
                None,
            ),
        ]


async def run(args: argparse.Namespace) -> None:
    demo = Demo(args.keys_url, args.admin_key)
    producer = KafkaProducer(args.kafka, client_id="usage-demo")
    await producer.start()
    started = datetime.now(UTC)
    try:
        for title, records, then in await demo.scenarios():
            print(f"publishing {len(records):5d} records: {title}")
            for start in range(0, len(records), 2000):
                chunk = records[start : start + 2000]
                await producer.send_many(
                    USAGE_RECORDS,
                    [(str(r.key_id).encode(), r.model_dump_json().encode(), ()) for r in chunk],
                )
            if then is not None:
                await then()
    finally:
        await producer.stop()
    print(
        "unused_key: raised by an hourly scan for keys idle 30 days; to watch it now, restart"
        " usage with USAGE_UNUSED_KEY_DAYS=0.001 USAGE_UNUSED_KEY_SCAN_SECONDS=10.\n"
    )
    await watch(args, started)


async def watch(args: argparse.Namespace, since: datetime) -> None:
    """Print the alerts raised since `since` as they appear."""
    seen: set[str] = set()
    headers = {"Authorization": f"Bearer {args.admin_key}"}
    deadline = time.monotonic() + args.watch_seconds
    async with httpx.AsyncClient(base_url=args.usage_url, headers=headers, timeout=10) as usage:
        while time.monotonic() < deadline:
            response = await usage.get("/v1/alerts", params={"since": since.isoformat()})
            response.raise_for_status()
            for alert in reversed(response.json()["items"]):
                if alert["alert_id"] not in seen:
                    seen.add(alert["alert_id"])
                    print(f"[{alert['severity']:8s}] {alert['kind']:24s} {alert['summary']}")
            await asyncio.sleep(1)
    print(f"{len(seen)} alerts; all of them: GET {args.usage_url}/v1/alerts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    key_file = ROOT / ".data" / "admin-key.demo"
    parser.add_argument(
        "--admin-key",
        default=os.environ.get("DEMO_ADMIN_KEY")
        or (key_file.read_text().strip() if key_file.exists() else None),
        help="a key of account demo with keys:manage, keys:verify and usage:read",
    )
    keys_port = os.environ.get("KEYS_HTTP_PORT", "8000")
    usage_port = os.environ.get("USAGE_HTTP_PORT", "8002")
    parser.add_argument("--keys-url", default=f"http://127.0.0.1:{keys_port}")
    parser.add_argument("--usage-url", default=f"http://127.0.0.1:{usage_port}")
    kafka_port = os.environ.get("KAFKA_PORT", "9092")  # the local stack's, like the ports above
    parser.add_argument(
        "--kafka", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{kafka_port}")
    )
    parser.add_argument("--watch-seconds", type=float, default=30.0)
    args = parser.parse_args()
    if not args.admin_key:
        parser.error("no admin key: run `make up` first, or pass --admin-key")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
