"""Decoding `usage.records` at a hundred thousand records a second.

The contract (`contracts.UsageRecord`) is the judge, but a pydantic validation costs
about 15 us a record. So each record is first decoded by a msgspec struct (`UsageWire`,
the contract's fields with its bounds, checked against it field by field in the tests)
that accepts a strict subset of what the contract accepts: canonical lowercase uuids,
RFC 3339 times with an offset, ints that are ints, IPv4 and IPv6 addresses read as the
contract reads them. Anything else, valid or not, goes to the contract itself, whose
verdict stands (a refusal is a dead letter). tests/unit/test_usage_decoding.py checks
with hypothesis that both accept and refuse the same records and read them alike.
"""

from __future__ import annotations

import functools
import ipaddress
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec

from contracts import UsageRecord
from contracts.usage import EARLIEST_USAGE_TIME, LATEST_USAGE_TIME, MAX_TOKENS
from servicekit.wire import ACCOUNT as _ACCOUNT
from servicekit.wire import IPV4 as _IPV4
from servicekit.wire import TIME as _TIME
from servicekit.wire import UUID as _UUID
from servicekit.wire import decode_each, ids_and_times
from servicekit.wire import remember as _remember
from services.usage.domain.requests import Request, network_of, shared_minute

_FINITE: Final = sys.float_info.max
_EARLIEST: Final = EARLIEST_USAGE_TIME.timestamp() + 86_400
_LATEST: Final = LATEST_USAGE_TIME.timestamp() - 86_400
"""The times the fast path takes: a day inside the contract's bounds, so that a float's
rounding never decides (the contract judges the days at the edges)."""
PREVIOUS: Final = "previous"
"""A record's `secret` when the request presented a rotated-out secret."""
_SECRETS: Final = frozenset({None, "current", PREVIOUS})


class UsageWire(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """`contracts.UsageRecord` as msgspec reads it: the same fields, names and bounds.
    What the bounds cannot say (uuid and account shapes, no NUL, a valid address, a real
    date) is checked in `_fast`, once per distinct value where values repeat."""

    record_id: str
    key_id: str
    account_id: str
    occurred_at: str
    source_ip: str
    endpoint: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    status_code: Annotated[int, msgspec.Meta(ge=100, le=599)]
    tokens_in: Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
    tokens_out: Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
    latency_ms: Annotated[float, msgspec.Meta(ge=0, le=_FINITE)]
    user_agent: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    model: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    secret: str | None = None
    """current or previous (checked in `_request`: a msgspec Literal here cost ~3 us a
    record in the ingest benchmark)."""


_DECODER: Final = msgspec.json.Decoder(UsageWire)


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
        shared_minute(int(at // 60)),
        network_of(record.source_ip),
        record.status_code,
        record.tokens_in,
        record.tokens_out,
        float(record.latency_ms),
        record.user_agent,
        record.endpoint,
        record.secret == PREVIOUS,
    )


def decode_requests(raws: Sequence[bytes]) -> list[Request | None]:
    """A batch at once: each record as a `Request`, or None where the fast path does not
    decide (the consumer then asks `decode_request`, whose verdict stands). The record
    ids and times of the batch are checked with one pattern each, over all of them."""
    wires = decode_each(_DECODER, raws)
    present = [w for w in wires if w is not None]
    checked = ids_and_times([w.record_id for w in present], [w.occurred_at for w in present])
    return [None if w is None else _request(w, checked) for w in wires]


def _fast(raw: bytes) -> Request | None:
    try:
        w = _DECODER.decode(raw)
    except msgspec.DecodeError:  # a validation error is one too
        return None
    return _request(w, checked=False)


def _request(w: UsageWire, checked: bool) -> Request | None:
    """`checked`: the record id and time are known to have their shapes."""
    record_id, occurred_at = w.record_id, w.occurred_at
    # Valid ids are remembered, interned: one string per key and account in the process
    # (the caches and the read model share it) instead of one per record kept.
    key_id = _KNOWN_KEYS.get(w.key_id) or _remember(_KNOWN_KEYS, w.key_id, _UUID)
    account_id = _KNOWN_ACCOUNTS.get(w.account_id) or _remember(
        _KNOWN_ACCOUNTS, w.account_id, _ACCOUNT
    )
    source_ip = w.source_ip
    head, _, last = source_ip.rpartition(".")
    network = (_IPV4_NETWORKS.get(head) if last in _OCTETS else None) or _network(source_ip)
    user_agent, model = w.user_agent, w.model
    if not (
        key_id is not None
        and account_id is not None
        and network is not None
        and (checked or (_UUID.match(record_id) and _TIME.match(occurred_at)))
        and "\x00" not in w.endpoint
        and (user_agent is None or "\x00" not in user_agent)
        and (model is None or "\x00" not in model)
        and w.secret in _SECRETS
    ):
        return None
    try:
        at = datetime.fromisoformat(occurred_at).timestamp()
    except (ValueError, OverflowError):  # e.g. February 30th: the contract explains it
        return None
    if not _EARLIEST < at < _LATEST:  # near or beyond the bounds: the contract judges
        return None
    return Request(
        record_id, key_id, account_id, at, shared_minute(int(at // 60)), network, w.status_code,
        w.tokens_in, w.tokens_out, float(w.latency_ms), user_agent, w.endpoint,
        w.secret == PREVIOUS,
    )  # fmt: skip


# Strings already found valid (keys and accounts repeat from record to record): a set
# lookup instead of a regex. Bounded: cleared when full.
_KNOWN_KEYS: dict[str, str] = {}
_KNOWN_ACCOUNTS: dict[str, str] = {}
_NETWORKS: dict[str, str] = {}
_IPV4_NETWORKS: dict[str, str] = {}
"""The /24 of each valid first three octets seen: an address is its head and an octet."""
_OCTETS: Final = frozenset(str(n) for n in range(256))
_NETWORK_CACHE_LIMIT: Final = 20_000


def _network(value: Any) -> str | None:
    if type(value) is not str:
        return None
    known = _NETWORKS.get(value)
    if known is not None:
        return known
    if _IPV4.match(value):
        head, _, _ = value.rpartition(".")
        if len(_IPV4_NETWORKS) >= _NETWORK_CACHE_LIMIT:
            _IPV4_NETWORKS.clear()
        ipv4 = _IPV4_NETWORKS[head] = f"{head}.0/24"
        return ipv4
    other = _other_network(value)
    if other is None:
        return None
    if len(_NETWORKS) >= _NETWORK_CACHE_LIMIT:
        _NETWORKS.clear()
    _NETWORKS[value] = other
    return other


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
