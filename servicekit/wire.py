"""Shapes a fast decoder checks before it accepts a message without its pydantic contract.

A service that reads a topic by the hundred thousand decodes each message with a msgspec
struct of the contract's fields and bounds, and checks here what the struct cannot say:
the canonical forms (lowercase uuids, RFC 3339 times with an offset, dotted IPv4
addresses, account ids). These accept a strict subset of what the contracts accept:
whatever they do not recognise is left to the contract, whose verdict stands. Each
service's tests check with hypothesis that its decoder and its contract agree.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import msgspec

T = TypeVar("T")

UUID_TEXT: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
UUID: Final = re.compile(rf"{UUID_TEXT}\Z")
"""A uuid as `str(uuid.UUID(...))` writes it."""
UUIDS: Final = re.compile(rf"(?:{UUID_TEXT}\n)*{UUID_TEXT}")
OCTET: Final = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4: Final = re.compile(rf"{OCTET}\.{OCTET}\.{OCTET}\.{OCTET}\Z")
"""A dotted IPv4 address in its canonical form (no leading zeros)."""
ACCOUNT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
"""contracts.AccountId."""
TIME_TEXT: Final = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
TIME: Final = re.compile(rf"{TIME_TEXT}\Z")
"""An RFC 3339 time with an offset, as `datetime.fromisoformat` reads it like pydantic."""
TIMES: Final = re.compile(rf"(?:{TIME_TEXT}\n)*{TIME_TEXT}")

CACHE_LIMIT: Final = 100_000


def all_match(pattern: re.Pattern[str], values: list[str]) -> bool:
    """Every value matches (`pattern` repeats one line's pattern, lines apart: UUIDS,
    TIMES): the count of line breaks proves that no value holds one, so each line is one
    whole value. One regex run for a batch instead of one per value."""
    text = "\n".join(values)
    return text.count("\n") == len(values) - 1 and pattern.fullmatch(text) is not None


def ids_and_times(ids: list[str], times: list[str]) -> bool:
    """A batch's message ids are all canonical uuids and its times all RFC 3339 times with
    an offset: the two checks every fast decoder makes once per batch."""
    return all_match(UUIDS, ids) and all_match(TIMES, times)


def decode_each(decoder: msgspec.json.Decoder[T], raws: Sequence[bytes]) -> list[T | None]:
    """Each message as the decoder's struct, or None where it does not decode (or breaks
    the struct's bounds): left to the contract."""
    decoded: list[T | None] = []
    decode = decoder.decode
    for raw in raws:
        try:
            decoded.append(decode(raw))
        except msgspec.DecodeError:  # a validation error is one too
            decoded.append(None)
    return decoded


def remember(known: dict[str, str], value: str, pattern: re.Pattern[str]) -> str | None:
    """`value` if it matches, interned and remembered in `known` (so the next time it is a
    dict lookup instead of a regex; cleared when full); None if it does not. `known` holds
    the interned string alone (as key and value), not the text it was read from: one
    string per value in the process, not two (~85 bytes a key id)."""
    if not _room_for(known, value, pattern):
        return None
    canonical = sys.intern(value)
    known[canonical] = canonical
    return canonical


def remember_as(
    known: dict[str, T], value: str, pattern: re.Pattern[str], read: Callable[[str], T]
) -> T | None:
    """`read(value)` if `value` matches, remembered in `known` by `value` as `remember`
    does; None if it does not match."""
    if not _room_for(known, value, pattern):
        return None
    canonical = known[value] = read(value)
    return canonical


def _room_for(known: dict[str, T], value: str, pattern: re.Pattern[str]) -> bool:
    """`value` matches, and `known` has room for it (cleared when full)."""
    if not pattern.match(value):
        return False
    if len(known) >= CACHE_LIMIT:
        known.clear()
    return True
