"""The detectors' state per key in PostgreSQL (key_activity, key_networks), and how a
key's state is rebuilt from it and from its rollups."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from services.usage.domain.activity import KeyActivity
from services.usage.domain.baseline import NO_BASELINE, Baseline


async def save_activity(conn: Any, touched: Sequence[KeyActivity]) -> None:
    """Write the detectors' state of the touched keys whose row is behind (the cache is
    the writer), and the networks they learned."""
    states = [s for s in touched if s.dirty]
    if states:
        await _save_rows(conn, states)
    learned = [(s.key_id, net, at) for s in touched for net, at in s.new_networks or ()]
    if learned:
        await conn.execute(
            "INSERT INTO key_networks (key_id, network, first_seen_at)"
            " SELECT k, n, to_timestamp(t) FROM unnest($1::uuid[], $2::text[], $3::float8[])"
            " AS u(k, n, t) ON CONFLICT DO NOTHING",
            [k for k, _, _ in learned],
            [n for _, n, _ in learned],
            [t for _, _, t in learned],
        )


async def _save_rows(conn: Any, states: Sequence[KeyActivity]) -> None:
    await conn.execute(
        "INSERT INTO key_activity AS s (key_id, account_id, first_used_at, last_used_at,"
        " last_failure_at, baseline_mean, baseline_var, baseline_minutes, folded_through,"
        " networks_unbounded, updated_at)"
        " SELECT k, a, to_timestamp(f), to_timestamp(l), to_timestamp(lf), bm, bv, bn, ft, nu,"
        " now() FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::float8[], $5::float8[],"
        " $6::float8[], $7::float8[], $8::int[], $9::bigint[], $10::bool[])"
        " AS u(k, a, f, l, lf, bm, bv, bn, ft, nu)"
        " ON CONFLICT (key_id) DO UPDATE SET first_used_at = EXCLUDED.first_used_at,"
        " last_used_at = EXCLUDED.last_used_at, last_failure_at = EXCLUDED.last_failure_at,"
        " baseline_mean = EXCLUDED.baseline_mean, baseline_var = EXCLUDED.baseline_var,"
        " baseline_minutes = EXCLUDED.baseline_minutes,"
        " folded_through = EXCLUDED.folded_through,"
        " networks_unbounded = EXCLUDED.networks_unbounded, updated_at = now()",
        [s.key_id for s in states],
        [s.account_id for s in states],
        [s.first_used_at for s in states],
        [s.last_used_at for s in states],
        [s.last_failure_at for s in states],
        [s.baseline.mean for s in states],
        [s.baseline.var for s in states],
        [s.baseline.minutes for s in states],
        [s.folded_through for s in states],
        [s.networks is None for s in states],
    )


async def load_activity(conn: Any, key_ids: Sequence[str]) -> dict[str, KeyActivity]:
    """The stored state of these keys (those never seen are absent): the row, with the last
    use, the open minutes and the trailing hour rebuilt from the rollups."""
    rows = await conn.fetch(
        "SELECT s.key_id::text, s.account_id, extract(epoch FROM s.first_used_at)::float8,"
        " extract(epoch FROM coalesce(r.last_at, s.last_used_at))::float8,"
        " extract(epoch FROM s.last_failure_at)::float8, s.baseline_mean, s.baseline_var,"
        " s.baseline_minutes, s.folded_through, s.networks_unbounded"
        " FROM key_activity s LEFT JOIN LATERAL (SELECT last_at FROM rollups"
        "  WHERE key_id = s.key_id ORDER BY minute DESC LIMIT 1) r ON true"
        " WHERE s.key_id = ANY($1::uuid[])",
        key_ids,
    )
    if not rows:
        return {}
    states: dict[str, KeyActivity] = {}
    for key_id, account, first, last, failure, mean, var, minutes, folded, unbounded in rows:
        states[key_id] = KeyActivity(
            sys.intern(key_id),  # the cache's key: one string per key in the process
            sys.intern(account),
            first_used_at=first,
            last_used_at=last,
            last_failure_at=failure,
            baseline=Baseline(mean, var, minutes) if minutes else NO_BASELINE,
            folded_through=folded,
            networks=None if unbounded else (),
            dirty=False,
        )
    known = list(states)
    learned: dict[str, list[str]] = {}
    for key_id, network in await conn.fetch(
        "SELECT key_id::text, network FROM key_networks WHERE key_id = ANY($1::uuid[])", known
    ):
        learned.setdefault(key_id, []).append(network)
    for key_id, networks in learned.items():
        if states[key_id].networks is not None:
            states[key_id].networks = tuple(networks)
    since = [int(states[k].last_used_at or 0) // 60 - 60 for k in known]
    for key_id, minute, requests, failures in await conn.fetch(
        "SELECT r.key_id::text, (extract(epoch FROM r.minute) / 60)::bigint, r.requests,"
        " r.auth_failures FROM unnest($1::uuid[], $2::bigint[]) AS u(k, m)"
        " JOIN rollups r ON r.key_id = u.k AND r.minute > to_timestamp(u.m * 60)"
        " ORDER BY r.key_id, r.minute",
        known,
        since,
    ):
        state = states[key_id]
        state.hour.add(minute, requests)
        if minute > state.folded_through:
            state.open_minute(minute, requests, failures)
    return states
