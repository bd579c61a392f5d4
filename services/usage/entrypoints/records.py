"""Decoding `usage.records` at tens of thousands of records a second.

The contract (`contracts.UsageRecord`) is the judge, but a pydantic validation costs
about 15 us a record, the whole budget at 50,000 records/s on one core. So the common,
plainly valid shape is checked by a fast path that accepts a strict subset of what the
contract accepts (canonical lowercase uuids, UTC times ending in Z or +00:00, ints that
are ints, dotted-quad IPv4); anything else, valid or not, goes to the contract itself,
whose verdict stands (a refusal is a dead letter). tests/unit/test_usage_decoding.py
checks that both paths agree.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import sys
from datetime import datetime
from typing import Any, Final

import orjson

from contracts import UsageRecord
from contracts.usage import MAX_TOKENS
from services.usage.domain.requests import Request, network_of

_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_TIME: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6}|\.\d{3})?(?:Z|\+00:00)\Z")
_OCTET: Final = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4: Final = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}\Z")
_ACCOUNT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_REQUIRED: Final = frozenset(
    {
        "record_id",
        "key_id",
        "account_id",
        "occurred_at",
        "source_ip",
        "endpoint",
        "status_code",
        "tokens_in",
        "tokens_out",
        "latency_ms",
    }
)
_ALLOWED: Final = _REQUIRED | {"user_agent", "model"}


def decode_request(raw: bytes) -> Request:
    """The record as a `Request`; raises ValueError (pydantic's) when the contract refuses."""
    fast = _fast(raw)
    if fast is not None:
        return fast
    return from_contract(UsageRecord.model_validate_json(raw))


def from_contract(record: UsageRecord) -> Request:
    at = record.occurred_at.timestamp()
    return Request(
        str(record.record_id),
        sys.intern(str(record.key_id)),
        sys.intern(record.account_id),
        at,
        int(at // 60),
        network_of(record.source_ip),
        record.status_code,
        record.tokens_in,
        record.tokens_out,
        float(record.latency_ms),
        record.user_agent,
        record.endpoint,
    )


def _fast(raw: bytes) -> Request | None:
    try:
        d = orjson.loads(raw)
        record_id, key_id, account_id = d["record_id"], d["key_id"], d["account_id"]
        occurred_at, status, endpoint = d["occurred_at"], d["status_code"], d["endpoint"]
        tokens_in, tokens_out, latency = d["tokens_in"], d["tokens_out"], d["latency_ms"]
        network = _NETWORKS.get(d["source_ip"]) or _network(d["source_ip"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if type(key_id) is not str or type(account_id) is not str:
        return None
    # Valid ids are remembered, interned: one string per key and account in the process
    # (the caches and the read model share it) instead of one per record kept.
    key_id = _KNOWN_KEYS.get(key_id) or _remember(_KNOWN_KEYS, key_id, _UUID)
    account_id = _KNOWN_ACCOUNTS.get(account_id) or _remember(_KNOWN_ACCOUNTS, account_id, _ACCOUNT)
    user_agent, model = d.get("user_agent"), d.get("model")
    if len(d) != _REQUIRED_COUNT + ("user_agent" in d) + ("model" in d):
        return None  # a field the contract does not know
    if not (
        network is not None
        and type(record_id) is str
        and _UUID.match(record_id)
        and key_id is not None
        and account_id is not None
        and type(occurred_at) is str
        and _TIME.match(occurred_at)
        and type(status) is int
        and 100 <= status <= 599
        and type(tokens_in) is int
        and 0 <= tokens_in <= MAX_TOKENS
        and type(tokens_out) is int
        and 0 <= tokens_out <= MAX_TOKENS
        and (type(latency) is float or type(latency) is int)
        and latency >= 0
        and type(endpoint) is str
        and 1 <= len(endpoint) <= 200
        and "\x00" not in endpoint
        and (user_agent is None or _text(user_agent, 500))
        and (model is None or _text(model, 100))
    ):
        return None
    try:
        at = datetime.fromisoformat(occurred_at).timestamp()
    except ValueError:  # e.g. February 30th: the contract explains it
        return None
    return Request(
        record_id, key_id, account_id, at, int(at // 60), network, status, tokens_in,
        tokens_out, float(latency), user_agent, endpoint,
    )  # fmt: skip


# Strings already found valid (keys and accounts repeat from record to record): a set
# lookup instead of a regex. Bounded: cleared when full.
_KNOWN_KEYS: dict[str, str] = {}
_KNOWN_ACCOUNTS: dict[str, str] = {}
_NETWORKS: dict[str, str] = {}
_CACHE_LIMIT: Final = 100_000
_NETWORK_CACHE_LIMIT: Final = 20_000
_REQUIRED_COUNT: Final = len(_REQUIRED)


def _remember(known: dict[str, str], value: str, pattern: re.Pattern[str]) -> str | None:
    if not pattern.match(value):
        return None
    if len(known) >= _CACHE_LIMIT:
        known.clear()
    canonical = known[value] = sys.intern(value)
    return canonical


def _text(value: Any, longest: int) -> bool:
    return type(value) is str and len(value) <= longest and "\x00" not in value


def _network(value: Any) -> str | None:
    if type(value) is not str:
        return None
    if _IPV4.match(value):
        head, _, _ = value.rpartition(".")
        network = f"{head}.0/24"
    else:
        found = _other_network(value)
        if found is None:
            return None
        network = found
    if len(_NETWORKS) >= _NETWORK_CACHE_LIMIT:
        _NETWORKS.clear()
    _NETWORKS[value] = network
    return network


@functools.lru_cache(maxsize=65536)
def _other_network(value: str) -> str | None:
    """IPv6 (and IPv4-mapped) addresses: parsed once per distinct address."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return network_of(str(address.ipv4_mapped))
    return network_of(str(address))
