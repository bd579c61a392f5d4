"""Scenarios for the shape of an access key: what a person, a log and a scanner see.

A key must be recognisable by one regex wherever it leaks, a typo must be caught
offline by its checksum, and the plaintext must never slip out through repr or str.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import string
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from contracts import Environment, KeyPrefix
from services.keys.domain.secret import (
    BASE62_ALPHABET,
    CHECKSUM_LENGTH,
    MAX_SECRET_LENGTH,
    RANDOM_LENGTH,
    SECRET_PATTERN,
    MalformedSecret,
    NewSecret,
    checksum,
    display_prefix,
    environment_tag,
    generate_secret,
    is_well_formed,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "secret-scanning.md"

environments = st.from_regex(r"[a-z][a-z0-9-]{0,31}", fullmatch=True)
random_parts = st.text(alphabet=BASE62_ALPHABET, min_size=RANDOM_LENGTH, max_size=RANDOM_LENGTH)


@st.composite
def well_formed_secrets(draw: st.DrawFn) -> str:
    """A well-formed secret drawn by hypothesis (so a failure replays exactly)."""
    body = f"ig_{environment_tag(draw(environments))}_{draw(random_parts)}"
    return body + checksum(body)


def random_part_of(secret: str) -> str:
    return secret.rsplit("_", 1)[1][:RANDOM_LENGTH]


@given(environments)
def test_every_generated_key_is_found_by_the_pattern_and_well_formed(environment: str) -> None:
    secret = generate_secret(environment)

    assert SECRET_PATTERN.fullmatch(secret.plaintext)
    assert is_well_formed(secret.plaintext)
    assert len(secret.plaintext) <= MAX_SECRET_LENGTH
    assert secret.plaintext.startswith(secret.prefix)
    assert display_prefix(secret.plaintext) == secret.prefix
    TypeAdapter(KeyPrefix).validate_python(secret.prefix)
    TypeAdapter(Environment).validate_python(environment)


@given(well_formed_secrets(), st.data())
def test_a_one_character_change_anywhere_is_rejected(secret: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(secret) - 1), label="position")
    replacement = data.draw(
        st.sampled_from(string.printable).filter(lambda char: char != secret[position]),
        label="replacement",
    )
    typo = secret[:position] + replacement + secret[position + 1 :]

    assert is_well_formed(secret)
    assert not is_well_formed(typo)


@given(well_formed_secrets(), st.data())
def test_two_swapped_neighbours_are_rejected(secret: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(secret) - 2), label="position")
    first, second = secret[position], secret[position + 1]
    swapped = secret[:position] + second + first + secret[position + 2 :]

    assert is_well_formed(swapped) == (first == second)


@given(well_formed_secrets(), st.sampled_from([-1, 1]))
def test_one_character_too_short_or_too_long_is_not_a_key(secret: str, delta: int) -> None:
    look_alike = secret[:-1] if delta < 0 else secret + "x"

    assert not is_well_formed(look_alike)
    assert SECRET_PATTERN.search(look_alike) is None


@pytest.mark.parametrize(
    ("environment", "tag"),
    [
        ("production", "live"),
        ("staging", "staging"),
        ("development", "development"),
        ("eu-west-1", "euwest1"),
        ("customer-acceptance-testing", "customeracceptan"),
        ("x", "x"),
    ],
)
def test_the_environment_tag_says_what_a_leak_puts_at_risk(environment: str, tag: str) -> None:
    secret = generate_secret(environment)

    assert secret.plaintext.startswith(f"ig_{tag}_")
    assert secret.prefix == f"ig_{tag}_{random_part_of(secret.plaintext)[:4]}"


@pytest.mark.parametrize("environment", ["", "Production", "1st", "eu_west", "a" * 33, "prod "])
def test_an_environment_that_is_not_a_slug_gets_no_key(environment: str) -> None:
    with pytest.raises(ValueError, match="slug"):
        generate_secret(environment)


def test_ten_thousand_keys_are_unique_and_drawn_uniformly_from_base62() -> None:
    keys = [generate_secret("production").plaintext for _ in range(10_000)]
    drawn = [random_part_of(key) for key in keys]
    counts = Counter("".join(drawn))

    assert len(set(keys)) == len(keys)
    assert all(len(part) == RANDOM_LENGTH for part in drawn)
    assert set(counts) == set(BASE62_ALPHABET)
    expected = 10_000 * RANDOM_LENGTH / 62  # about 4,839 per character; sd about 69
    assert all(abs(count - expected) < expected * 0.1 for count in counts.values())


def test_the_checksum_is_six_base62_characters_even_for_small_crcs() -> None:
    # CRC32 of the empty string is 0: the padding must still give 6 characters.
    assert checksum("") == "0" * CHECKSUM_LENGTH
    assert checksum("ig_live_") == checksum("ig_live_")
    assert re.fullmatch(r"[0-9A-Za-z]{6}", checksum("ig_live_" + "z" * RANDOM_LENGTH))


def test_a_new_secret_never_shows_its_plaintext(caplog: pytest.LogCaptureFixture) -> None:
    secret = generate_secret("production")
    logger = logging.getLogger("tests.secret")

    with caplog.at_level(logging.INFO):
        logger.info("created %s", secret)
        logger.info("created %r", secret)
    try:
        raise RuntimeError(secret)
    except RuntimeError:
        formatted_exception = traceback.format_exc()
    renderings = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        "%s" % (secret,),  # noqa: UP031 - the old %-formatting is what logging uses
        repr([secret]),
        str({"secret": secret}),
        caplog.text,
        formatted_exception,
    ]

    assert repr(secret) == f"NewSecret(prefix={secret.prefix!r}, plaintext=<redacted>)"
    for rendering in renderings:
        assert secret.plaintext not in rendering
        assert random_part_of(secret.plaintext) not in rendering


def test_a_new_secret_cannot_be_changed_after_it_is_made() -> None:
    secret = generate_secret("staging")

    with pytest.raises(AttributeError):
        secret.plaintext = "ig_staging_other"  # type: ignore[misc]
    assert isinstance(secret, NewSecret)


@given(well_formed_secrets(), well_formed_secrets())
def test_the_pattern_finds_keys_wherever_they_leak(first: str, second: str) -> None:
    leaks = [
        f"INSTAGEN_API_KEY={first}\nOTHER={second}\n",
        json.dumps({"api_key": first, "nested": {"keys": [second]}}),
        f"GET https://api.instagen.example/v1/generate?api_key={first}&model=xl&k2={second}",
        f"Authorization: Bearer {first}\r\nX-Backup-Key: '{second}'",
        f"<key>{first}</key><!-- {second} -->",
    ]

    for text in leaks:
        assert SECRET_PATTERN.findall(text) == [first, second]


@pytest.mark.parametrize(
    "look_alike",
    [
        "ig_live_" + "A" * 35,  # one short
        "ig_live_" + "A" * 37,  # one long
        "xig_live_" + "A" * 36,  # glued to a word
        "ig_live_" + "A" * 36 + "_suffix",  # goes on as an identifier
        "IG_LIVE_" + "A" * 36,  # wrong case
        "ig__" + "A" * 36,  # no tag
        "ig_" + "a" * 17 + "_" + "A" * 36,  # tag too long
        "ig_1live_" + "A" * 36,  # tag not starting with a letter
        "ig_live_" + "A" * 30 + "-" + "A" * 5,  # not base62
    ],
)
def test_the_pattern_ignores_look_alikes_of_the_wrong_shape(look_alike: str) -> None:
    assert SECRET_PATTERN.search(f"token: {look_alike} end") is None
    assert not is_well_formed(look_alike)


def test_a_scanner_drops_right_shaped_strings_whose_checksum_fails() -> None:
    real = generate_secret("production").plaintext
    fake = "ig_live_" + "A" * 36
    candidates = SECRET_PATTERN.findall(f"{fake} {real}")

    assert candidates == [fake, real]
    assert [candidate for candidate in candidates if is_well_formed(candidate)] == [real]


@pytest.mark.parametrize("text", ["", "ig_live_", "x" * 10_000, "ig_live_" + "é" * 36])
def test_absurd_input_is_malformed_and_never_echoed(text: str) -> None:
    assert not is_well_formed(text)
    with pytest.raises(MalformedSecret) as raised:
        display_prefix(text)
    assert raised.value.code == "malformed"
    assert str(raised.value) == "not a well-formed access key"


@functools.cache
def _doc_validator() -> dict[str, Any]:
    block = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert block, "docs/secret-scanning.md must hold a python validator block"
    namespace: dict[str, Any] = {}
    exec(block.group(1), namespace)  # noqa: S102 - the project's own documentation
    return namespace


@given(well_formed_secrets(), st.data())
def test_the_documented_validator_agrees_with_the_service(secret: str, data: st.DataObject) -> None:
    validator = _doc_validator()
    position = data.draw(st.integers(0, len(secret) - 1))
    typo = secret[:position] + ("0" if secret[position] != "0" else "1") + secret[position + 1 :]

    assert validator["INSTAGEN_KEY"].pattern == SECRET_PATTERN.pattern
    assert validator["is_instagen_key"](secret)
    assert not validator["is_instagen_key"](typo)
    assert validator["find_instagen_keys"](f"key={secret}, typo={typo}") == [secret]
