"""The two things the key service does with a secret besides showing it once.

- :class:`SecretHasher` makes the lookup hash. It is keyed (HMAC-SHA-256 with a pepper
  from the environment): a leaked table of hashes cannot be brute-forced offline
  without the pepper, which lives outside the database.
- :class:`SecretVault` seals the plaintext for "view it again" (AES-256-GCM, key id as
  associated data, so a ciphertext copied onto another key's row does not open).
  Revoking a key deletes its sealed row; nothing else can give the secret back.

Neither class ever puts a secret or key material into a message, a repr or an error.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import string
from typing import Final
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_PEPPER_BYTES: Final = 32
MASTER_KEY_BYTES: Final = 32
SEALED_FORMAT_VERSION: Final = 1
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
_HEADER_BYTES: Final = 1 + NONCE_BYTES
_KEY_HINT: Final = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class VaultError(Exception):
    """A sealed secret did not open: tampered, truncated, or the wrong key or key id."""


class SecretHasher:
    """HMAC-SHA-256 of a secret under the pepper: the only form the lookup index holds."""

    __slots__ = ("_pepper",)

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < MIN_PEPPER_BYTES:
            raise ValueError(f"the pepper must be at least {MIN_PEPPER_BYTES} bytes")
        self._pepper = bytes(pepper)

    def digest(self, secret: str) -> bytes:
        """32 bytes. Lone surrogates (possible in JSON input) hash instead of raising,
        because an encoding error would carry the presented text along with it."""
        data = secret.encode("utf-8", "surrogatepass")
        return hmac.digest(self._pepper, data, "sha256")

    def __repr__(self) -> str:
        return "SecretHasher(pepper=<redacted>)"


class SecretVault:
    """Seals secrets as ``version (1 byte) || nonce (12) || ciphertext || tag (16)``.

    The version byte leaves room for a new master key or algorithm later: rows sealed
    under an old version stay readable while new ones use the new one. Nonces are
    random; 96 random bits stay safe far beyond the number of keys one master key seals.
    """

    __slots__ = ("_aead",)

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise ValueError(f"the master key must be exactly {MASTER_KEY_BYTES} bytes")
        self._aead = AESGCM(bytes(master_key))

    def seal(self, key_id: UUID, plaintext: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8", "surrogatepass"), key_id.bytes)
        return bytes([SEALED_FORMAT_VERSION]) + nonce + sealed

    def open(self, key_id: UUID, sealed: bytes) -> str:
        if len(sealed) < _HEADER_BYTES + TAG_BYTES:
            raise VaultError(f"sealed secret of key {key_id} is truncated")
        if sealed[0] != SEALED_FORMAT_VERSION:
            raise VaultError(f"sealed secret of key {key_id} has unknown format {sealed[0]}")
        nonce, ciphertext = sealed[1:_HEADER_BYTES], sealed[_HEADER_BYTES:]
        try:
            data = self._aead.decrypt(nonce, ciphertext, key_id.bytes)
        except InvalidTag:
            raise VaultError(
                f"sealed secret of key {key_id} failed authentication "
                "(tampered, another master key, or sealed for another key)"
            ) from None
        return data.decode("utf-8", "surrogatepass")

    def __repr__(self) -> str:
        return "SecretVault(master_key=<redacted>)"


def derive_key(master_key: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose (HKDF-SHA-256), so one master key serves several uses
    without any two of them sharing key material."""
    return HKDF(
        algorithm=hashes.SHA256(), length=MASTER_KEY_BYTES, salt=None, info=purpose.encode()
    ).derive(master_key)


def decode_key_material(value: str, name: str, length: int | None) -> bytes:
    """Key material from a setting: urlsafe or standard base64 (padding optional) or hex.

    ``length`` set: exactly that many bytes (the master key). ``length`` None: at least
    32 bytes (the pepper), and a raw token of 32+ characters that decodes to fewer bytes
    is taken as its UTF-8 bytes. An all-hex value of even length is read as hex. Errors
    name the setting and never echo its value.
    """
    text = value.strip()
    if not text:
        raise ValueError(f"{name} is empty; {_KEY_HINT}")
    decoded = _decode(text)
    if length is not None:
        if decoded is None or len(decoded) != length:
            raise ValueError(
                f"{name} must be {length} bytes encoded as urlsafe base64 or hex"
                f"{_decoded_size(decoded)}; {_KEY_HINT}"
            )
        return decoded
    if decoded is not None and len(decoded) >= MIN_PEPPER_BYTES:
        return decoded
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) >= MIN_PEPPER_BYTES:
        return raw
    raise ValueError(
        f"{name} must hold at least {MIN_PEPPER_BYTES} bytes (base64, hex or a raw token)"
        f"{_decoded_size(decoded)}; {_KEY_HINT}"
    )


def _decode(text: str) -> bytes | None:
    if len(text) % 2 == 0 and all(char in string.hexdigits for char in text):
        return bytes.fromhex(text)
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None


def _decoded_size(decoded: bytes | None) -> str:
    return " (it is neither)" if decoded is None else f" (it decodes to {len(decoded)} bytes)"
