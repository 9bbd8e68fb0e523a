"""y-webrtc password rooms: the same key, blobs and sealed payloads as y-webrtc's crypto.js."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtsync.errors import ConfigError, LocalProtocolError, ProtocolError
from crdtsync.protocol.lib0 import write_any, write_var_string, write_var_uint8_array
from crdtsync.protocol.ywebrtc_crypto import IV_BYTES, RoomCipher

# Test vectors from y-webrtc 10.3.0 (`src/crypto.js`) with lib0 0.2.120 under Node 20's
# WebCrypto. KEY is `deriveKey("hunter2", "room-1")` exported raw. y-webrtc's `encrypt` draws
# its own IV, so BLOB and SEALED were made with WebCrypto AES-GCM under that key with IV and
# the lib0 framing `encrypt` writes, and y-webrtc's `decrypt`/`decryptJson` opened them;
# Y_WEBRTC_SEALED is `encryptJson(SIGNAL, key)` itself (random IV), base64'd by lib0. Blobs
# and sealed payloads made by this module were likewise opened by y-webrtc's `decrypt` and
# `decryptJson`.
PASSWORD = "hunter2"
ROOM = "room-1"
KEY = bytes.fromhex("9dd5a19b36c93b32da3679f6968ba0c7ee02bbd54a4cdc2a9e50931430e92f64")
# deriveKey("pässwörd😀", "Räum/1"): non-ASCII password and room go in as UTF-8.
KEY2 = bytes.fromhex("58cdaf8552705c20f9c7f5f07a60ab2af6c97bf1616b20e28ddcb58fd0508c95")
IV = bytes(range(1, 13))
PLAINTEXT = b"hello, y-webrtc"
BLOB = bytes.fromhex(
    "074145532d47434d0c0102030405060708090a0b0c1fe291507f1b10f39af46203519c0f35e746b7bfdb7af3"
    "34da89111034b61687"
)
SIGNAL = {
    "type": "signal",
    "from": "6a4b1b3e-7c1c-4a2e-9d3f-0e1f2a3b4c5d",
    "to": "0f9e8d7c-6b5a-4f3e-8d2c-1b0a99887766",
    "token": 1764000000000.4567,
    "signal": {
        "type": "offer",
        "sdp": "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    },
}
SEALED = (
    "B0FFUy1HQ00MAQIDBAUGBwgJCgsM2gH88ThnDUy2lN9mD1SAGjqS7qCGLjfa2QG273o90m52CGZv+qBe+wjIJV7e"
    "Cn0PH6CfK/gvYCfUcHSnM6gNnNXLH5Sxygv7XX+KFDgMHLdYWkH23IpV6gGjxX90CpgPCBRt25XOEHLrrD+CRXn4"
    "Am97NpticnKN4M2goXrr4h8mj9n1mdLkuC7Ri0N7YKrMuWqDM6Qv68d1HQqkJS2wqvzczeySXCngvR8OgrjQ3sK/"
    "zTY0g4lrQwr6KEXZatXZU0PV2B6DtOBVbMQcyIAt2ogIszjx4wIJmV5xtQ=="
)
Y_WEBRTC_SEALED = (
    "B0FFUy1HQ00MW4O18zxcCHt3xjxM2gFCHzUupnN7LoHi+e9QFdx/HBEAKImADlyzsTVY7hpQtFIzecVRfxkug1cq"
    "qo+c6lcJ97MK7NNyycig7+hgeYlmL2BvyQA3NwrzT9VXwaMX4qWBnUhH+0w89s0X+feNX81xDpsc55hdo347mi4Z"
    "EJbJpUm4B582iuTZEsQSOyG/YxakglUQSeCdyqrmkadbX6Oyg0FyiN8QqWO2rKpMuqD2gCSpMtvlMdAOQw6rzQDG"
    "tQ/Zj1rrlovq2m3euRyGnCyVSxYzi4jZZ7KD82B0GB/J/PMvSSyOOaNMUw=="
)


@pytest.fixture(scope="module")
def cipher() -> RoomCipher:
    return RoomCipher.derive(PASSWORD, ROOM)


def frame(algorithm: str, iv: bytes, sealed: bytes) -> bytes:
    return write_var_string(algorithm) + write_var_uint8_array(iv) + write_var_uint8_array(sealed)


# --- vectors ---------------------------------------------------------------------------


def test_derive_matches_webcrypto(cipher: RoomCipher) -> None:
    assert cipher.encrypt(PLAINTEXT, IV) == RoomCipher(KEY).encrypt(PLAINTEXT, IV)
    assert RoomCipher.derive("pässwörd😀", "Räum/1").encrypt(b"x", IV) == RoomCipher(KEY2).encrypt(
        b"x", IV
    )


def test_encrypt_matches_ywebrtc(cipher: RoomCipher) -> None:
    assert cipher.encrypt(PLAINTEXT, IV) == BLOB


def test_decrypt_reads_ywebrtc(cipher: RoomCipher) -> None:
    assert cipher.decrypt(BLOB) == PLAINTEXT


def test_sealed_payload_matches_ywebrtc(cipher: RoomCipher) -> None:
    assert base64.b64encode(cipher.encrypt(write_any(SIGNAL), IV)).decode() == SEALED
    assert cipher.open_payload(SEALED) == SIGNAL


def test_opens_what_ywebrtc_sealed(cipher: RoomCipher) -> None:
    assert cipher.open_payload(Y_WEBRTC_SEALED) == SIGNAL


def test_seal_then_open(cipher: RoomCipher) -> None:
    sealed = cipher.seal_payload(SIGNAL)
    assert sealed != cipher.seal_payload(SIGNAL)  # a fresh IV each time
    assert cipher.open_payload(sealed) == SIGNAL
    raw = base64.b64decode(sealed, validate=True)
    assert raw.startswith(write_var_string("AES-GCM") + bytes((IV_BYTES,)))


@given(st.binary(max_size=300))
def test_encrypt_round_trip(plaintext: bytes) -> None:
    cipher = RoomCipher(KEY)
    blob = cipher.encrypt(plaintext)
    assert len(blob) == 8 + 1 + IV_BYTES + len(
        write_var_uint8_array(b"\x00" * (len(plaintext) + 16))
    )
    assert cipher.decrypt(blob) == plaintext


def test_repr_hides_the_key(cipher: RoomCipher) -> None:
    for text in (repr(cipher), str(cipher)):
        assert KEY.hex() not in text
        assert "hidden" in text
    assert not hasattr(cipher, "__dict__")


# --- caller misuse -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "room"),
    [("", ROOM), (PASSWORD, ""), (None, ROOM), (PASSWORD, b"room-1"), ("\ud800", ROOM)],
)
def test_derive_refuses_bad_arguments(password: Any, room: Any) -> None:
    with pytest.raises(ConfigError):
        RoomCipher.derive(password, room)


@pytest.mark.parametrize("key", [b"", KEY[:16], KEY + b"\x00", KEY.hex(), None])
def test_constructor_takes_32_bytes(key: Any) -> None:
    with pytest.raises(ConfigError):
        RoomCipher(key)


@pytest.mark.parametrize("iv", [b"", b"\x00" * 11, b"\x00" * 16, "0" * 12])
def test_encrypt_refuses_a_bad_iv(cipher: RoomCipher, iv: Any) -> None:
    with pytest.raises(LocalProtocolError):
        cipher.encrypt(b"x", iv)


def test_seal_refuses_what_write_any_cannot_hold(cipher: RoomCipher) -> None:
    with pytest.raises(LocalProtocolError):
        cipher.seal_payload({"x": object()})


# --- hostile input -------------------------------------------------------------------------


def test_wrong_password_or_room(cipher: RoomCipher) -> None:
    for other in (RoomCipher.derive("hunter3", ROOM), RoomCipher.derive(PASSWORD, "room-2")):
        with pytest.raises(ProtocolError, match="authentication"):
            other.decrypt(BLOB)
        with pytest.raises(ProtocolError, match="authentication"):
            other.open_payload(SEALED)


def test_every_truncation_and_bit_flip(cipher: RoomCipher) -> None:
    for cut in range(len(BLOB)):
        with pytest.raises(ProtocolError):
            cipher.decrypt(BLOB[:cut])
    for index in range(len(BLOB)):
        for bit in (0x01, 0x80):
            tampered = bytearray(BLOB)
            tampered[index] ^= bit
            with pytest.raises(ProtocolError):
                cipher.decrypt(bytes(tampered))


@pytest.mark.parametrize(
    "data",
    [
        frame("AES-CBC", IV, BLOB[21:][1:]),  # y-webrtc reads past this; we refuse it
        frame("AES-GCM", IV + b"\x00" * 4, b"\x00" * 32),
        frame("AES-GCM", IV, b"\x00" * 15),  # shorter than the tag
        BLOB + b"\x00",  # trailing bytes
        b"\x07AES-GCM\x0c" + IV + b"\xff\xff\xff\xff\x0f",  # a 4 GiB ciphertext claimed
        b"\xff" * 9,
        b"",
    ],
)
def test_bad_framing(cipher: RoomCipher, data: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(ProtocolError):
        cipher.decrypt(data)
    assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize(
    "data",
    [
        "",
        "!!!!",
        "QUFB\n",  # whitespace
        "QUE",  # missing padding
        "QUFBQQ==QUFB",  # data after padding
        "B0FFUy1HQ00M-_",  # base64url alphabet
        "é" * 8,
        SEALED[:-4],
        base64.b64encode(b"garbage that is not a frame").decode(),
        None,
        b"B0FFUy1HQ00M",
        42,
    ],
)
def test_garbage_payloads(cipher: RoomCipher, data: Any) -> None:
    with pytest.raises(ProtocolError):
        cipher.open_payload(data)


@pytest.mark.parametrize(
    "plaintext",
    [b"", b"\x7e\x00", b"\x70", b"\x77\x05ab", b"\x75\x01" * 1000 + b"\x7e"],
)
def test_sealed_plaintext_must_be_one_value(cipher: RoomCipher, plaintext: bytes) -> None:
    sealed = base64.b64encode(cipher.encrypt(plaintext)).decode()
    with pytest.raises(ProtocolError):
        cipher.open_payload(sealed)


@given(st.binary(max_size=200))
def test_garbage_bytes_raise_only_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        RoomCipher(KEY).decrypt(data)


@given(st.text(max_size=200))
def test_garbage_text_raises_only_protocol_error(data: str) -> None:
    with pytest.raises(ProtocolError):
        RoomCipher(KEY).open_payload(data)
