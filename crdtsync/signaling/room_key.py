"""End-to-end encryption of link-setup payloads in password rooms.

Everyone who knows a room's password derives the same AES-GCM key from it (PBKDF2-HMAC-SHA256
salted with the room name), so the signaling server relays payloads it can neither read nor
alter. That matters: an SDP offer carries the DTLS fingerprint that authenticates the data
channel, and a server that could swap it could sit in the middle of every link. The sender's
and the recipient's ids are bound in as associated data, so a payload cannot be redirected to
another peer; and the sender signs it with its identity key (Ed25519, the key its id is
derived from), so another password holder cannot pass a payload off as someone else's.
Freshness (offer ids, times) is the connector's, inside the sealed bytes. Plain functions.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from crdtsync.errors import ConfigError, SignalingError
from crdtsync.signaling.identity import Identity, peer_id_of

__all__ = ["PBKDF2_ITERATIONS", "RoomKey"]

# OWASP's 2023 figure for PBKDF2-HMAC-SHA256; about 0.1 s once per peer (callers use a thread).
PBKDF2_ITERATIONS = 600_000
# First byte of every sealed payload, so the scheme can change: 1 was unsigned, 2 is
# version + sender's public key + signature + nonce + ciphertext.
_VERSION = b"\x02"
_KEY_SIZE = 32  # Ed25519 public key
_SIGNATURE_SIZE = 64  # Ed25519 signature
_NONCE_SIZE = 12
_HEADER_SIZE = 1 + _KEY_SIZE + _SIGNATURE_SIZE
_SIGNED = b"crdtsync sealed signal\0"  # domain of the signature: it signs nothing else


class RoomKey:
    """The AES-GCM key of one password room: ``RoomKey.derive(password, room)``."""

    def __init__(self, room: str, key: bytes) -> None:
        self.room = room
        self._aead = AESGCM(key)

    @classmethod
    def derive(cls, password: str, room: str) -> RoomKey:
        """Stretch ``password`` into the room's key (slow on purpose: it resists guessing)."""
        if not password:
            raise ConfigError("a room password must not be empty")
        kdf = PBKDF2HMAC(hashes.SHA256(), 32, b"crdtsync room " + room.encode(), PBKDF2_ITERATIONS)
        return cls(room, kdf.derive(password.encode()))

    def seal(self, data: bytes, *, sender: Identity, recipient: str) -> bytes:
        """Encrypt ``data`` from ``sender`` to ``recipient``, signed with ``sender``'s key."""
        nonce = os.urandom(_NONCE_SIZE)
        context = self._context(sender.peer_id, recipient)
        body = nonce + self._aead.encrypt(nonce, data, context)
        signature = sender.sign(_SIGNED + context + b"\0" + sender.public_key + body)
        return _VERSION + sender.public_key + signature + body

    def open(self, sealed: bytes, *, sender: str, recipient: str) -> bytes:
        """Decrypt what ``sender`` sealed for ``recipient``.

        SignalingError if it was sealed with another password, for another pair of peers,
        signed by a key that is not ``sender``'s, or altered on the way.
        """
        if sealed[:1] != _VERSION or len(sealed) < _HEADER_SIZE + _NONCE_SIZE:
            raise SignalingError(f"payload from {sender} is not sealed with a room key")
        public_key = sealed[1 : 1 + _KEY_SIZE]
        signature = sealed[1 + _KEY_SIZE : _HEADER_SIZE]
        body = sealed[_HEADER_SIZE:]
        if peer_id_of(public_key) != sender:
            raise SignalingError(
                f"payload from {sender} is signed by another peer ({peer_id_of(public_key)})"
            )
        context = self._context(sender, recipient)
        if not _verify(public_key, _SIGNED + context + b"\0" + public_key + body, signature):
            raise SignalingError(f"payload from {sender} has a bad signature")
        nonce, ciphertext = body[:_NONCE_SIZE], body[_NONCE_SIZE:]
        try:
            return self._aead.decrypt(nonce, ciphertext, context)
        except InvalidTag:
            raise SignalingError(
                f"payload from {sender} does not open with the room key "
                "(another password, or altered on the way)"
            ) from None

    def _context(self, sender: str, recipient: str) -> bytes:
        return "\0".join((self.room, sender, recipient)).encode()


def _verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` signs ``data`` with the private half of ``public_key``. The key's
    id is the sender's, whom the server saw log in with it (``identity.py`` refuses small-order
    keys there), so a forgeable key can only ever speak for an id of its own."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
