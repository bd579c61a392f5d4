"""Scenarios for what the key service keeps of a secret: a keyed hash and a sealed copy.

A stolen hash table is useless without the pepper; a sealed secret opens only with the
master key and only on its own key's row; and settings that hold key material are
checked without ever printing it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.keys.adapters.crypto import (
    SecretHasher,
    SecretVault,
    VaultError,
    decode_key_material,
)
from services.keys.domain.secret import generate_secret

PEPPER = bytes(range(32))
MASTER_KEY = bytes(range(100, 132))
KEY_ID = UUID("8f14e45f-ceea-467f-a0e6-ee1b1ce5b6a1")
SECRET = generate_secret("production").plaintext


@pytest.fixture
def vault() -> SecretVault:
    return SecretVault(MASTER_KEY)


def test_the_lookup_hash_is_hmac_sha256_under_the_pepper() -> None:
    hasher = SecretHasher(PEPPER)
    digest = hasher.digest(SECRET)

    assert digest == hmac.new(PEPPER, SECRET.encode(), hashlib.sha256).digest()
    assert len(digest) == 32
    assert hasher.digest(SECRET) == digest
    assert SecretHasher(PEPPER).digest(SECRET) == digest


def test_another_pepper_gives_another_hash_so_a_leaked_table_needs_the_pepper() -> None:
    assert SecretHasher(PEPPER).digest(SECRET) != SecretHasher(bytes(32)).digest(SECRET)
    assert hashlib.sha256(SECRET.encode()).digest() != SecretHasher(PEPPER).digest(SECRET)


@given(st.text(max_size=60), st.text(max_size=60))
def test_different_presented_texts_hash_differently(first: str, second: str) -> None:
    hasher = SecretHasher(PEPPER)

    assert (hasher.digest(first) == hasher.digest(second)) == (first == second)


def test_a_lone_surrogate_from_json_input_hashes_instead_of_raising_with_the_text() -> None:
    assert len(SecretHasher(PEPPER).digest("ig_live_\ud800")) == 32


def test_a_short_pepper_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        SecretHasher(bytes(31))


def test_reprs_hold_no_key_material(vault: SecretVault) -> None:
    for holder, material in ((SecretHasher(PEPPER), PEPPER), (vault, MASTER_KEY)):
        assert "redacted" in repr(holder)
        assert material.hex() not in repr(holder)
        assert repr(material) not in repr(holder)


def test_a_sealed_secret_opens_on_its_own_key(vault: SecretVault) -> None:
    secret = generate_secret("production").plaintext
    sealed = vault.seal(KEY_ID, secret)

    assert vault.open(KEY_ID, sealed) == secret
    assert SecretVault(MASTER_KEY).open(KEY_ID, sealed) == secret
    assert sealed[0] == 1
    assert len(sealed) == 1 + 12 + len(secret) + 16
    assert secret.encode() not in sealed


def test_sealing_twice_gives_two_ciphertexts(vault: SecretVault) -> None:
    assert vault.seal(KEY_ID, SECRET) != vault.seal(KEY_ID, SECRET)


@given(st.data())
def test_a_flipped_bit_anywhere_fails_to_open(data: st.DataObject) -> None:
    vault = SecretVault(MASTER_KEY)
    sealed = bytearray(vault.seal(KEY_ID, SECRET))
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1), label="bit")
    sealed[bit // 8] ^= 1 << (bit % 8)

    with pytest.raises(VaultError) as raised:
        vault.open(KEY_ID, bytes(sealed))
    assert SECRET not in str(raised.value)


def test_a_ciphertext_moved_to_another_keys_row_fails(vault: SecretVault) -> None:
    sealed = vault.seal(KEY_ID, SECRET)

    with pytest.raises(VaultError, match="failed authentication"):
        vault.open(uuid4(), sealed)


def test_another_master_key_cannot_open_it(vault: SecretVault) -> None:
    sealed = vault.seal(KEY_ID, SECRET)

    with pytest.raises(VaultError) as raised:
        SecretVault(secrets.token_bytes(32)).open(KEY_ID, sealed)
    message = str(raised.value)
    assert SECRET not in message
    assert MASTER_KEY.hex() not in message
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


@given(st.data())
def test_a_truncated_blob_fails(data: st.DataObject) -> None:
    vault = SecretVault(MASTER_KEY)
    sealed = vault.seal(KEY_ID, SECRET)
    cut = data.draw(st.integers(0, len(sealed) - 1), label="kept bytes")

    with pytest.raises(VaultError):
        vault.open(KEY_ID, sealed[:cut])


@pytest.mark.parametrize("version", [0, 2, 255])
def test_an_unknown_format_version_is_refused(vault: SecretVault, version: int) -> None:
    sealed = vault.seal(KEY_ID, SECRET)

    with pytest.raises(VaultError, match="unknown format"):
        vault.open(KEY_ID, bytes([version]) + sealed[1:])


@pytest.mark.parametrize("size", [0, 16, 24, 31, 33, 64])
def test_only_a_256_bit_master_key_is_accepted(size: int) -> None:
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        SecretVault(bytes(size))


def test_settings_accept_urlsafe_base64_with_or_without_padding_and_hex() -> None:
    material = b"\xfb\xff" + secrets.token_bytes(30)  # bytes whose base64 has '-' and '_'
    urlsafe = base64.urlsafe_b64encode(material).decode()

    assert "=" in urlsafe
    for text in (urlsafe, urlsafe.rstrip("="), base64.b64encode(material).decode()):
        assert decode_key_material(text, "KEYS_MASTER_KEY", 32) == material
    assert decode_key_material(material.hex(), "KEYS_MASTER_KEY", 32) == material
    assert decode_key_material(material.hex().upper(), "KEYS_MASTER_KEY", 32) == material
    assert decode_key_material(f"  {urlsafe}\n", "KEYS_MASTER_KEY", 32) == material


def test_the_local_stacks_generated_token_is_32_bytes_for_either_setting() -> None:
    token = secrets.token_urlsafe(32)

    assert len(decode_key_material(token, "KEYS_MASTER_KEY", 32)) == 32
    assert decode_key_material(token, "KEYS_PEPPER", None) == base64.urlsafe_b64decode(
        token + "=" * (-len(token) % 4)
    )


def test_a_long_raw_token_is_a_pepper_but_never_a_master_key() -> None:
    token = "correct horse battery staple, 42!"

    assert decode_key_material(token, "KEYS_PEPPER", None) == token.encode()
    with pytest.raises(ValueError, match="KEYS_MASTER_KEY"):
        decode_key_material(token, "KEYS_MASTER_KEY", 32)


@pytest.mark.parametrize(
    ("value", "length"),
    [
        (base64.urlsafe_b64encode(b"k" * 31).decode(), 32),
        (base64.urlsafe_b64encode(b"k" * 33).decode(), 32),
        ("ab" * 16, 32),
        ("ab" * 15, None),
        ("short-but-secret", None),
        ("not base64 at all!", 32),
        ("", 32),
        ("   ", None),
    ],
)
def test_bad_key_material_is_refused_by_name_without_echoing_it(
    value: str, length: int | None
) -> None:
    with pytest.raises(ValueError, match="KEYS_SETTING") as raised:
        decode_key_material(value, "KEYS_SETTING", length)
    message = str(raised.value)
    if value.strip():
        assert value.strip() not in message
    assert "token_urlsafe" in message
