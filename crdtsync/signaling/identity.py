"""Peer identity: an Ed25519 key pair per peer; its id is derived from the public key.

The server derives the id and checks a signature over a domain tag, its own origin (the URL
the client dialed) and its fresh nonce, so the id is assigned, not chosen, cannot be spoken
by anyone without the key, and a proof made for one server is worthless at another; yet a
peer that reconnects (or meets a restarted server) keeps the same id and its links stay valid.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crdtsync.errors import ConfigError

__all__ = [
    "PROOF_TAG",
    "Identity",
    "normalise_origin",
    "peer_id_of",
    "proof_message",
    "verify_proof",
]

# What a login signature is for; a signature over anything else never passes for one.
PROOF_TAG = b"crdtsync signaling login v2\n"

_P = 2**255 - 19  # the field prime of edwards25519 (RFC 8032, 5.1)
# The y coordinates of the eight points of small order (1, 2, 4, 8): 1, -1, 0, and the two
# of order 8 (as in libsodium's blocklist). A key on one of them (either sign of x) verifies
# forged signatures: with the neutral point 01 00..00, R = that point and S = 0 pass for
# every message.
_SMALL_ORDER_Y = frozenset(
    {
        0,
        1,
        _P - 1,
        int.from_bytes(
            bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
            "little",
        ),
        int.from_bytes(
            bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
            "little",
        ),
    }
)
_DEFAULT_PORTS = {"ws": 80, "wss": 443}


def peer_id_of(public_key: bytes) -> str:
    """The id of the peer holding ``public_key``: 80 bits of its SHA-256, in base32."""
    digest = hashlib.sha256(b"crdtsync peer id\n" + public_key).digest()
    return base64.b32encode(digest[:10]).decode().lower()


def normalise_origin(url: str) -> str:
    """``scheme://host:port`` of a ws:// or wss:// URL: lower case, explicit port, IPv6 in
    brackets; what a login proof names. ConfigError for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"not a signaling URL: {url[:100]!r}") from exc
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        raise ConfigError(f"not a ws:// or wss:// URL with a host: {url[:100]!r}")
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS[scheme]}"


def proof_message(origin: str, nonce: bytes) -> bytes:
    """What a login signs: the tag, the server's origin, the server's nonce."""
    return PROOF_TAG + origin.encode() + b"\n" + nonce


def _acceptable_key(public_key: bytes) -> bool:
    """A canonical encoding (y < p) of a point that is not of small order."""
    if len(public_key) != 32:
        return False
    y = int.from_bytes(public_key, "little") & ((1 << 255) - 1)
    return y < _P and y not in _SMALL_ORDER_Y


def verify_proof(public_key: bytes, origin: str, nonce: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the holder of ``public_key`` logging in to ``origin`` with
    ``nonce``; small-order and non-canonical keys never pass (anyone can sign for them)."""
    if not _acceptable_key(public_key):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signature, proof_message(origin, nonce)
        )
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

    def sign(self, data: bytes) -> bytes:
        """An Ed25519 signature of ``data`` as it is (a login proof is ``prove``)."""
        return self._private_key.sign(data)

    def prove(self, origin: str, nonce: bytes) -> bytes:
        """The login proof for the server at ``origin`` (normalised) that sent ``nonce``."""
        return self._private_key.sign(proof_message(origin, nonce))
