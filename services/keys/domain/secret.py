"""Access-key secrets: how they are made, recognised and told apart from look-alikes.

A secret reads ``ig_<tag>_<random><checksum>``, e.g. ``ig_live_4fTq...Zk02Hb``:

- ``ig`` names the product, so a scanner (or a person) knows whose key it found;
- the environment tag says what a leak puts at risk: ``live`` for ``production``,
  otherwise the environment slug without its dashes, cut to 16 characters
  (``eu-west-staging`` -> ``euweststaging``). The tag is a hint for humans, not an
  identity: two environments may share a tag, and the key's real environment is the
  one recorded with the key;
- 30 base62 characters drawn uniformly by ``secrets`` (about 178.6 bits);
- 6 base62 characters of CRC32 over everything before them, so a scanner can reject
  a look-alike offline and the verify path can answer ``malformed`` without a lookup.

See docs/secret-scanning.md for the regex and a validator to paste into a scanner.
"""

from __future__ import annotations

import re
import secrets
import zlib
from dataclasses import dataclass, field
from typing import ClassVar, Final

PRODUCT_PREFIX: Final = "ig"
PRODUCTION_TAG: Final = "live"
BASE62_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH: Final = 30
CHECKSUM_LENGTH: Final = 6
MAX_TAG_LENGTH: Final = 16
DISPLAYED_RANDOM_CHARS: Final = 4
"""How much of the random part the display prefix shows (``ig_live_Ab3d``)."""

MAX_SECRET_LENGTH: Final = (
    len(PRODUCT_PREFIX) + 1 + MAX_TAG_LENGTH + 1 + RANDOM_LENGTH + CHECKSUM_LENGTH
)
"""The longest secret there can be: reject longer input before hashing or matching it."""

_ENVIRONMENT_SLUG: Final = re.compile(r"[a-z][a-z0-9-]{0,31}")

# ASCII word boundaries, as in RE2 (gitleaks, trufflehog, GitHub), so the same pattern
# finds the same keys everywhere. ``_`` is a word character: ``x_ig_live_...`` and a
# tail that goes on in letters, digits or ``_`` are not keys.
SECRET_PATTERN: Final = re.compile(
    rf"\b{PRODUCT_PREFIX}_[a-z][a-z0-9]{{0,{MAX_TAG_LENGTH - 1}}}"
    rf"_[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}\b",
    re.ASCII,
)
"""Finds every key in a text; pair it with :func:`is_well_formed` to drop look-alikes."""


_PAIRS: Final = tuple(a + b for a in BASE62_ALPHABET for b in BASE62_ALPHABET)
_PAIR_RANGE: Final = len(_PAIRS)


class MalformedSecret(ValueError):
    """The text is not an access key (wrong shape or checksum). Never holds the text."""

    code: ClassVar[str] = "malformed"


@dataclass(frozen=True)
class NewSecret:
    """A freshly generated secret: the plaintext, shown once, and its display prefix.

    repr/str show only the prefix, so the plaintext cannot reach a log line, an
    exception message or a debugger dump by accident; read ``.plaintext`` on purpose.
    """

    plaintext: str = field(repr=False)
    prefix: str

    def __repr__(self) -> str:
        return f"NewSecret(prefix={self.prefix!r}, plaintext=<redacted>)"

    __str__ = __repr__


def environment_tag(environment: str) -> str:
    """The tag a secret carries for ``environment`` (``production`` -> ``live``)."""
    if not _ENVIRONMENT_SLUG.fullmatch(environment):
        raise ValueError("environment must be a lowercase slug like 'production' or 'eu-west'")
    if environment == "production":
        return PRODUCTION_TAG
    return environment.replace("-", "")[:MAX_TAG_LENGTH]


def checksum(body: str) -> str:
    """CRC32 of ``body`` (``ig_<tag>_<random>``) in base62, left-padded to 6 characters.

    62**6 > 2**32, so every CRC32 fits in 6 characters.
    """
    # Two base62 digits at a time (verification checks one per request): 62**6 > 2**32,
    # so three pairs hold every CRC32.
    high, rest = divmod(zlib.crc32(body.encode("ascii")), _PAIR_RANGE * _PAIR_RANGE)
    middle, low = divmod(rest, _PAIR_RANGE)
    return _PAIRS[high] + _PAIRS[middle] + _PAIRS[low]


def generate_secret(environment: str) -> NewSecret:
    """A new secret for a key of ``environment``, with its display prefix."""
    head = f"{PRODUCT_PREFIX}_{environment_tag(environment)}_"
    random_part = "".join(secrets.choice(BASE62_ALPHABET) for _ in range(RANDOM_LENGTH))
    body = head + random_part
    return NewSecret(plaintext=body + checksum(body), prefix=_prefix_of(body))


def is_well_formed(text: str) -> bool:
    """Whether ``text`` is exactly one access key with a valid checksum (no lookup needed)."""
    if len(text) > MAX_SECRET_LENGTH or not SECRET_PATTERN.fullmatch(text):
        return False
    body, check = text[:-CHECKSUM_LENGTH], text[-CHECKSUM_LENGTH:]
    return checksum(body) == check


def display_prefix(text: str) -> str:
    """The display prefix (``ig_live_Ab3d``) of a well-formed secret."""
    if not is_well_formed(text):
        raise MalformedSecret("not a well-formed access key")
    return _prefix_of(text)


def _prefix_of(secret_or_body: str) -> str:
    tag_end = secret_or_body.index("_", len(PRODUCT_PREFIX) + 1) + 1
    return secret_or_body[: tag_end + DISPLAYED_RANDOM_CHARS]
