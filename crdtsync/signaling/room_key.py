"""End-to-end encryption of link-setup payloads in password rooms.

Everyone who knows a room's password derives the same AES-GCM key from it (PBKDF2-HMAC-SHA256
salted with the room name), so the signaling server relays payloads it can neither read nor
alter. That matters: an SDP offer carries the DTLS fingerprint that authenticates the data
channel, and a server that could swap it could sit in the middle of every link. The sender's
and the recipient's ids are bound in as associated data, so a payload cannot be replayed to
another peer or passed off as someone else's. Plain functions, no I/O.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from crdtsync.errors import ConfigError, SignalingError

__all__ = ["PBKDF2_ITERATIONS", "RoomKey"]

# OWASP's 2023 figure for PBKDF2-HMAC-SHA256; about 0.1 s once per peer (callers use a thread).
PBKDF2_ITERATIONS = 600_000
_VERSION = b"\x01"  # first byte of every sealed payload, so the scheme can change later
_NONCE_SIZE = 12


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

    def seal(self, data: bytes, *, sender: str, recipient: str) -> bytes:
        """Encrypt ``data`` from ``sender`` to ``recipient``."""
        nonce = os.urandom(_NONCE_SIZE)
        return _VERSION + nonce + self._aead.encrypt(nonce, data, self._context(sender, recipient))

    def open(self, sealed: bytes, *, sender: str, recipient: str) -> bytes:
        """Decrypt what ``sender`` sealed for ``recipient``.

        SignalingError if it was sealed with another password, for another pair of peers,
        or altered on the way.
        """
        if sealed[:1] != _VERSION or len(sealed) < 1 + _NONCE_SIZE:
            raise SignalingError(f"payload from {sender} is not sealed with a room key")
        nonce, ciphertext = sealed[1 : 1 + _NONCE_SIZE], sealed[1 + _NONCE_SIZE :]
        try:
            return self._aead.decrypt(nonce, ciphertext, self._context(sender, recipient))
        except InvalidTag:
            raise SignalingError(
                f"payload from {sender} does not open with the room key "
                "(another password, or altered on the way)"
            ) from None

    def _context(self, sender: str, recipient: str) -> bytes:
        return "\0".join((self.room, sender, recipient)).encode()
