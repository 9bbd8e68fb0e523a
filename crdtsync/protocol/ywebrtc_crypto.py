"""y-webrtc password rooms: the key, the AES-GCM framing and the sealed signaling payload.

A y-webrtc room with a password (y-webrtc ``crypto.js``) encrypts each signaling ``publish``
payload and every BroadcastChannel message; the data channel itself is not encrypted. The
signaling cores call :meth:`RoomCipher.seal_payload` / :meth:`RoomCipher.open_payload` on the
``data`` field; bytes match y-webrtc 10.3.0 with lib0 0.2.120.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from crdtsync.errors import ConfigError, LocalProtocolError, ProtocolError
from crdtsync.protocol.lib0 import (
    Lib0Value,
    read_any,
    read_var_string,
    read_var_uint8_array,
    write_any,
    write_var_string,
    write_var_uint8_array,
)

__all__ = [
    "ALGORITHM",
    "IV_BYTES",
    "KEY_BYTES",
    "PBKDF2_ITERATIONS",
    "TAG_BYTES",
    "RoomCipher",
]

# y-webrtc ``deriveKey``: PBKDF2 over SHA-256, 100,000 iterations, to a 256-bit AES-GCM key.
PBKDF2_ITERATIONS = 100_000
KEY_BYTES = 32
# y-webrtc ``encrypt``: ``crypto.getRandomValues(new Uint8Array(12))``, the algorithm name first.
ALGORITHM = "AES-GCM"
IV_BYTES = 12
# WebCrypto appends a 128-bit tag to the AES-GCM ciphertext.
TAG_BYTES = 16


def _utf8_argument(name: str, value: object) -> bytes:
    """The UTF-8 of a password or room name, as y-webrtc's ``string.encodeUtf8`` takes it."""
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a str (got {type(value).__name__})")
    if not value:
        # y-webrtc tests ``if (password)``: an empty password means a room without encryption.
        raise ConfigError(f"{name} must not be empty")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # TextEncoder would turn a lone surrogate into U+FFFD, a key nobody meant to share.
        raise ConfigError(f"{name} is not valid Unicode (a lone surrogate at {exc.start})") from exc


class RoomCipher:
    """The AES-GCM key of one y-webrtc password room, and the framing y-webrtc puts around it.

    Build it with :meth:`derive` (slow on purpose); the constructor takes a raw 32-byte key,
    e.g. one derived once and kept. The key never appears in ``repr``.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            size = len(key) if isinstance(key, bytes) else type(key).__name__
            raise ConfigError(f"a room key is {KEY_BYTES} bytes (got {size})")
        self._aead = AESGCM(key)

    @classmethod
    def derive(cls, password: str, room: str) -> RoomCipher:
        """The key y-webrtc ``deriveKey(password, roomName)`` derives, salted by the room name.

        100,000 PBKDF2 rounds take tens of milliseconds or more: run it off the event loop.
        ConfigError for a password or room name that is not a non-empty str.
        """
        secret = _utf8_argument("password", password)
        salt = _utf8_argument("room", room)
        kdf = PBKDF2HMAC(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, iterations=PBKDF2_ITERATIONS
        )
        return cls(kdf.derive(secret))

    def __repr__(self) -> str:
        return "RoomCipher(key=<hidden>)"

    def encrypt(self, plaintext: bytes, iv: bytes | None = None) -> bytes:
        """y-webrtc ``encrypt``: varString("AES-GCM") + varUint8Array(iv) + varUint8Array(ct).

        The IV is random unless given (tests); never reuse one under the same key.
        """
        if iv is None:
            iv = os.urandom(IV_BYTES)
        elif not isinstance(iv, bytes) or len(iv) != IV_BYTES:
            size = len(iv) if isinstance(iv, bytes) else type(iv).__name__
            raise LocalProtocolError(f"AES-GCM IV must be {IV_BYTES} bytes (got {size})")
        sealed = self._aead.encrypt(iv, bytes(plaintext), None)
        return (
            write_var_string(ALGORITHM) + write_var_uint8_array(iv) + write_var_uint8_array(sealed)
        )

    def decrypt(self, data: bytes) -> bytes:
        """y-webrtc ``decrypt``, stricter: ProtocolError on bad framing or failed authentication.

        y-webrtc reads past a wrong algorithm name and ignores trailing bytes; no y-webrtc
        peer writes either, so both are refused here, as are an IV other than 12 bytes and
        a ciphertext shorter than its tag.
        """
        algorithm, pos = read_var_string(data, 0)
        if algorithm != ALGORITHM:
            raise ProtocolError(
                f"encrypted message: algorithm {algorithm[:32]!r}, not {ALGORITHM!r}"
            )
        iv, pos = read_var_uint8_array(data, pos)
        if len(iv) != IV_BYTES:
            raise ProtocolError(f"encrypted message: IV of {len(iv)} bytes, not {IV_BYTES}")
        sealed, pos = read_var_uint8_array(data, pos)
        if len(sealed) < TAG_BYTES:
            raise ProtocolError(
                f"encrypted message: {len(sealed)} bytes of ciphertext, less than the "
                f"{TAG_BYTES}-byte tag"
            )
        if pos != len(data):
            raise ProtocolError(f"encrypted message: {len(data) - pos} bytes after the ciphertext")
        try:
            return self._aead.decrypt(iv, sealed, None)
        except InvalidTag as exc:
            raise ProtocolError(
                "encrypted message: authentication failed (wrong password or tampered bytes)"
            ) from exc

    def seal_payload(self, payload: object) -> str:
        """The signaling ``data`` of a password room: base64(encrypt(writeAny(payload))).

        y-webrtc ``encryptJson`` then lib0 ``buffer.toBase64`` (standard alphabet, padded).
        LocalProtocolError if ``payload`` is not something ``write_any`` encodes.
        """
        return base64.b64encode(self.encrypt(write_any(payload))).decode("ascii")

    def open_payload(self, data: str) -> Lib0Value:
        """The object inside a password room's signaling ``data`` (y-webrtc ``decryptJson``).

        ProtocolError for anything else: not a str, not strict padded base64, bad framing,
        failed authentication, or plaintext that is not exactly one writeAny value.
        """
        if not isinstance(data, str):
            raise ProtocolError(f"sealed payload must be a base64 str (got {type(data).__name__})")
        try:
            raw = base64.b64decode(data, validate=True)
        except ValueError as exc:  # binascii.Error, or a non-ASCII str
            raise ProtocolError(f"sealed payload is not valid base64 ({exc})") from exc
        plaintext = self.decrypt(raw)
        value, pos = read_any(plaintext)
        if pos != len(plaintext):
            raise ProtocolError(
                f"sealed payload: {len(plaintext) - pos} bytes after the writeAny value"
            )
        return value
