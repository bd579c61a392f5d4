"""The shape of an InstaGen access key, checked offline before any lookup.

``ig_<tag>_<30 base62 random><6 base62 CRC32 of what precedes it>``: the published format
(docs/secret-scanning.md), so garbage and look-alikes are refused without a network call.
"""

from __future__ import annotations

import re
import zlib
from typing import Final

MAX_SECRET_LENGTH: Final = 56
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SHAPE: Final = re.compile(r"ig_[a-z][a-z0-9]{0,15}_[0-9A-Za-z]{36}", re.ASCII)


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode("ascii"))
    digits = ""
    while value:
        value, remainder = divmod(value, 62)
        digits = _BASE62[remainder] + digits
    return digits.rjust(6, "0")


def is_well_formed(secret: str) -> bool:
    """True when ``secret`` has an access key's shape and a matching checksum."""
    return (
        len(secret) <= MAX_SECRET_LENGTH
        and _SHAPE.fullmatch(secret) is not None
        and _checksum(secret[:-6]) == secret[-6:]
    )
