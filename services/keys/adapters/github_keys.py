"""GitHub's secret-scanning signatures: ECDSA P-256 with SHA-256 over the raw body.

GitHub publishes its public keys at `GET https://api.github.com/meta/public_keys/
secret_scanning` as `{"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}`.
The service reads a copy of that document from a file or a setting at start-up and
never fetches it itself: a key GitHub adds is a configuration change, made on purpose.
Every listed key is accepted (GitHub may still sign with a key it no longer marks
current while it rotates).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

MAX_SIGNATURE_CHARS = 512
"""A DER ECDSA P-256 signature is at most 72 bytes (96 base64 characters)."""


class GitHubKeys:
    """The public keys GitHub signs its reports with, by key identifier."""

    def __init__(self, keys: Mapping[str, ec.EllipticCurvePublicKey]) -> None:
        self._keys = dict(keys)

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def from_document(cls, document: str) -> GitHubKeys:
        """Read GitHub's `meta/public_keys/secret_scanning` document (JSON text)."""
        if not document.strip():
            return cls({})
        try:
            parsed: Any = json.loads(document)
        except ValueError:
            raise ValueError("the GitHub public keys document is not JSON") from None
        entries = parsed.get("public_keys") if isinstance(parsed, dict) else None
        if not isinstance(entries, list):
            raise ValueError("the GitHub public keys document has no public_keys list")
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for entry in entries:
            identifier = entry.get("key_identifier") if isinstance(entry, dict) else None
            pem = entry.get("key") if isinstance(entry, dict) else None
            if not isinstance(identifier, str) or not isinstance(pem, str):
                raise ValueError("each public key needs a key_identifier and a PEM key")
            try:
                key = load_pem_public_key(pem.encode())
            except (ValueError, TypeError, UnsupportedAlgorithm):
                raise ValueError(f"public key {identifier[:20]!r} is not a PEM key") from None
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
                raise ValueError(f"public key {identifier[:20]!r} is not an ECDSA P-256 key")
            keys[identifier] = key
        return cls(keys)

    @classmethod
    def load(cls, document: str, path: str) -> GitHubKeys:
        """From the setting's text, or else the file it names; none configured: no keys
        (then every report is refused as unsigned)."""
        if document.strip():
            return cls.from_document(document)
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read {path}: {type(exc).__name__}") from None
            return cls.from_document(text)
        return cls({})

    def verify(self, identifier: str | None, signature: str | None, body: bytes) -> bool:
        """Whether `signature` (base64 DER) by key `identifier` signs `body`."""
        key = self._keys.get(identifier or "")
        if key is None or not signature or len(signature) > MAX_SIGNATURE_CHARS:
            return False
        try:
            der = base64.b64decode(signature, validate=True)
            key.verify(der, body, ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, ValueError, InvalidSignature):
            return False
        return True
