"""A stand-in for GitHub's secret-scanning signer: a key pair of the test's own, its public
half in the shape of GitHub's `meta/public_keys/secret_scanning` document."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass(frozen=True)
class Signer:
    identifier: str
    private: ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls, identifier: str) -> Signer:
        return cls(identifier, ec.generate_private_key(ec.SECP256R1()))

    def document(self) -> str:
        """GitHub's public keys document, listing this signer's key."""
        pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        entry = {"key_identifier": self.identifier, "key": pem.decode(), "is_current": True}
        return json.dumps({"public_keys": [entry]})

    def headers(self, body: bytes) -> dict[str, str]:
        """The headers GitHub sends with `body`."""
        signature = self.private.sign(body, ec.ECDSA(hashes.SHA256()))
        return {
            "Github-Public-Key-Identifier": self.identifier,
            "Github-Public-Key-Signature": base64.b64encode(signature).decode(),
            "Content-Type": "application/json",
        }
