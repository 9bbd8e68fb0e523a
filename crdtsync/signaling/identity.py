"""Peer identity: an Ed25519 key pair per peer; its id is derived from the public key.

The server derives the id and checks a signature over its own fresh nonce, so the id is
assigned, not chosen, and cannot be spoken by anyone without the key, yet a peer that
reconnects (or meets a restarted server) keeps the same id and its links stay valid.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["Identity", "peer_id_of", "verify_proof"]


def peer_id_of(public_key: bytes) -> str:
    """The id of the peer holding ``public_key``: 80 bits of its SHA-256, in base32."""
    digest = hashlib.sha256(b"crdtsync peer id\n" + public_key).digest()
    return base64.b32encode(digest[:10]).decode().lower()


def verify_proof(public_key: bytes, nonce: bytes, signature: bytes) -> bool:
    """Whether ``signature`` signs ``nonce`` with the private half of ``public_key``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, nonce)
    except (InvalidSignature, ValueError):
        return False
    return True


class Identity:
    """A peer's key pair; keep one per peer process to keep its id."""

    def __init__(self, private_key: Ed25519PrivateKey | None = None) -> None:
        self._private_key = private_key or Ed25519PrivateKey.generate()
        self.public_key = self._private_key.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw
        )
        self.peer_id = peer_id_of(self.public_key)

    def sign(self, nonce: bytes) -> bytes:
        return self._private_key.sign(nonce)
