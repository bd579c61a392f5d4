"""Decoding `keys.events` a batch at a time, as the usage service decodes its records.

The contract (`contracts.Event`) is the judge, but a pydantic validation of a whole event
costs tens of microseconds. So each event's envelope is first decoded by a msgspec struct
(`EventWire`: the envelope's fields and bounds, checked against the contract in the tests)
that accepts a strict subset of what the contract accepts: canonical lowercase uuids,
RFC 3339 times with an offset, ints that are ints, dotted IPv4 addresses (servicekit.wire).
The event's `data` is then validated by the contract's own model of that event type, and
written back by it (the details an audit record keeps and hashes); a rename (a KeyUpdated
of the name alone, whose data never repeats) is read by a struct of its own instead, its
names checked by the contract's own check of a key name. Anything else, valid
or not, goes to the contract itself, whose verdict stands (a refusal is a dead letter).
tests/unit/test_audit_key_events.py checks with hypothesis that both accept and refuse the
same events (and renames) and read them alike.
"""

from __future__ import annotations

import typing
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

import msgspec
import orjson
from asyncpg.pgproto.pgproto import UUID as _DatabaseUUID

from contracts import EVENT_ADAPTER, ContractModel, Event
from contracts.keys import validate_field_value
from servicekit.wire import (
    ACCOUNT,
    CACHE_LIMIT,
    IPV4,
    TIME,
    UUID,
    decode_each,
    ids_and_times,
    remember,
    remember_as,
)
from services.audit.domain.entries import ActorRef, Entry
from services.audit.domain.translate import event_data, event_entry, from_event

_MAX_BIGINT: Final = 2**63 - 1
_Correlation = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ActorWire(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """`contracts.Actor` as msgspec reads it."""

    type: Literal["user", "service", "system"]
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    ip: str | None = None
    user_agent: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class EventWire(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The envelope of `contracts.Event` as msgspec reads it: the same fields, names and
    bounds; `data` is left as it was written, for the contract's model of `event_type`."""

    event_id: str
    event_type: str
    key_id: str
    account_id: str
    stream_version: Annotated[int, msgspec.Meta(ge=1, le=_MAX_BIGINT)]
    position: Annotated[int, msgspec.Meta(ge=1, le=_MAX_BIGINT)]
    occurred_at: str
    actor: ActorWire
    data: msgspec.Raw
    schema_version: Literal[1] = 1
    correlation_id: _Correlation | None = None
    causation_id: _Correlation | None = None


_DECODER: Final = msgspec.json.Decoder(EventWire)
DATA_MODELS: Final[dict[str, type[ContractModel]]] = {
    cls.model_fields["event_type"].default: cls.model_fields["data"].annotation
    for cls in typing.get_args(typing.get_args(Event)[0])
}
"""The contract's model of each event type's `data`."""


def decode_event(raw: bytes) -> Entry:
    """The event as an audit entry; raises ValueError (pydantic's) when the contract
    refuses it."""
    return from_event(EVENT_ADAPTER.validate_json(raw))


def decode_events(raws: Sequence[bytes]) -> list[Entry | None]:
    """A batch at once: each event as an entry, or None where the fast path does not
    decide (the consumer then asks `decode_event`, whose verdict stands). The event ids
    and times of the batch are checked with one pattern each, over all of them."""
    wires = decode_each(_DECODER, raws)
    present = [w for w in wires if w is not None]
    checked = ids_and_times([w.event_id for w in present], [w.occurred_at for w in present])
    return [None if w is None else _entry(w, checked) for w in wires]


def fast_entry(raw: bytes) -> Entry | None:
    """One event by the fast path alone (None: left to the contract)."""
    try:
        return _entry(_DECODER.decode(raw), checked=False)
    except msgspec.DecodeError:
        return None


def _entry(w: EventWire, checked: bool) -> Entry | None:
    """`checked`: the event id and time are known to have their shapes."""
    event_id, occurred_at = w.event_id, w.occurred_at
    key_id = _KEY_IDS.get(w.key_id) or remember_as(_KEY_IDS, w.key_id, UUID, _DatabaseUUID)
    account_id = _ACCOUNTS.get(w.account_id) or remember(_ACCOUNTS, w.account_id, ACCOUNT)
    a = w.actor
    actor = _ACTORS.get((a.type, a.id, a.ip, a.user_agent)) or _actor(a)
    model = DATA_MODELS.get(w.event_type)
    correlation_id, causation_id = w.correlation_id, w.causation_id
    if not (
        key_id is not None
        and account_id is not None
        and actor is not None
        and model is not None
        and (checked or (UUID.match(event_id) and TIME.match(occurred_at)))
        and (correlation_id is None or "\x00" not in correlation_id)
        and (causation_id is None or "\x00" not in causation_id)
        and (w.stream_version == 1 or w.event_type != "KeyCreated")
    ):
        return None
    try:
        occurred = datetime.fromisoformat(occurred_at).astimezone(UTC)
        data = _DATA.get((w.event_type, raw_data := bytes(w.data))) or _data(
            w.event_type, model, raw_data
        )
    except (ValueError, OverflowError):  # ValidationError is one: the contract explains it
        return None
    return event_entry(
        f"event:{event_id}", account_id, occurred, actor, w.event_type, key_id,
        correlation_id, causation_id, data, w.stream_version,
    )  # fmt: skip


# Values already found valid (keys, accounts and actors repeat from event to event): a
# dict lookup instead of a regex. Bounded: cleared when full.
_KEY_IDS: dict[str, uuid.UUID] = {}
"""As asyncpg makes the uuids it reads (a `uuid.UUID` made in C): its `hex`, hashed into
each record, and its COPY are a fraction of the pure Python one's."""
_ACCOUNTS: dict[str, str] = {}
_ACTORS: dict[tuple[str, str, str | None, str | None], ActorRef] = {}
_DATA: dict[tuple[str, bytes], tuple[str | None, str]] = {}
"""What the contract's model made of an event type's `data` as written (a reason, a reveal's
empty data and a scope change repeat across keys): validated and written back once."""
_DATA_LIMIT: Final = 4096


class _NameWire(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    name: str


class RenameWire(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The `data` of a `KeyUpdated` that changes the name alone: names differ from key to
    key, so the cache of data as written does not serve it, and the contract's model of
    `KeyUpdated` costs ten times what this costs."""

    before: _NameWire
    after: _NameWire


_RENAME: Final = msgspec.json.Decoder(RenameWire)


def renamed(raw: bytes) -> tuple[str, str] | None:
    """A rename's data as the contract reads and writes it (the new name, the details),
    or None where the contract is to judge it: each name must be a valid key name (by the
    contract's own check) and the two must differ."""
    try:
        wire = _RENAME.decode(raw)
        before = validate_field_value("name", wire.before.name)
        after = validate_field_value("name", wire.after.name)
    except (msgspec.DecodeError, ValueError):  # ValidationError is one
        return None
    if before == after:
        return None
    return after, orjson.dumps({"before": {"name": before}, "after": {"name": after}}).decode()


def _data(event_type: str, model: type[ContractModel], raw: bytes) -> tuple[str | None, str]:
    """Raises ValidationError when the contract refuses the data."""
    fast = renamed(raw) if event_type == "KeyUpdated" else None
    if fast is not None:
        return fast  # not kept: names hardly repeat
    data = event_data(model.model_validate_json(raw))
    if len(_DATA) >= _DATA_LIMIT:
        _DATA.clear()
    _DATA[(event_type, raw)] = data
    return data


def _actor(a: ActorWire) -> ActorRef | None:
    if (
        "\x00" in a.id
        or (a.ip is not None and not IPV4.match(a.ip))  # IPv6: canonical form by the contract
        or (a.user_agent is not None and "\x00" in a.user_agent)
    ):
        return None
    if len(_ACTORS) >= CACHE_LIMIT:
        _ACTORS.clear()
    actor = _ACTORS[(a.type, a.id, a.ip, a.user_agent)] = ActorRef(a.type, a.id, a.ip, a.user_agent)
    return actor
