"""Login proofs: bound to the server's origin (L1), never by a small-order key (L2)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crdtsync.errors import ConfigError
from crdtsync.signaling.identity import Identity, normalise_origin, verify_proof

NEUTRAL = bytes([1]) + bytes(31)  # the neutral point (0, 1)
FORGED = NEUTRAL + bytes(32)  # R = the neutral point, S = 0
NONCE = bytes(range(32))
ORIGIN = "ws://127.0.0.1:8765"
_P = 2**255 - 19

# All eight points of small order (libsodium's blocklist), both signs of x, and
# non-canonical encodings (y >= p) of the neutral point and of order 4.
SMALL_ORDER = [
    NEUTRAL,
    bytes([1]) + bytes(30) + b"\x80",
    (_P - 1).to_bytes(32, "little"),
    bytes(32),
    bytes(31) + b"\x80",
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    _P.to_bytes(32, "little"),
    (_P + 1).to_bytes(32, "little"),
    ((1 << 255) - 1).to_bytes(32, "little"),
]


def test_the_neutral_point_forgery_is_refused() -> None:
    """L2: without the check, this signature passes for every message."""
    Ed25519PublicKey.from_public_bytes(NEUTRAL).verify(FORGED, b"any message at all")
    assert not verify_proof(NEUTRAL, ORIGIN, NONCE, FORGED)


@pytest.mark.parametrize("key", SMALL_ORDER, ids=lambda key: key.hex()[:8] + key.hex()[-2:])
def test_small_order_and_non_canonical_keys_never_verify(key: bytes) -> None:
    assert not verify_proof(key, ORIGIN, NONCE, key + bytes(32))
    assert not verify_proof(key, ORIGIN, NONCE, NEUTRAL + bytes(32))


def test_a_proof_is_for_one_origin_and_one_nonce() -> None:
    """L1: a proof made for one server is worthless at another; a bare signature too."""
    alice = Identity()
    proof = alice.prove(ORIGIN, NONCE)
    assert verify_proof(alice.public_key, ORIGIN, NONCE, proof)
    assert not verify_proof(alice.public_key, "ws://127.0.0.1:8766", NONCE, proof)
    assert not verify_proof(alice.public_key, ORIGIN, bytes(32), proof)
    assert not verify_proof(alice.public_key, ORIGIN, NONCE, alice.sign(NONCE))


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("ws://127.0.0.1:8765", "ws://127.0.0.1:8765"),
        ("WS://Signal.Example.COM/room?x=1", "ws://signal.example.com:80"),
        ("wss://signal.example.com", "wss://signal.example.com:443"),
        ("wss://signal.example.com:443/", "wss://signal.example.com:443"),
        ("ws://[::1]:9000", "ws://[::1]:9000"),
    ],
)
def test_origins_are_normalised(url: str, origin: str) -> None:
    assert normalise_origin(url) == origin


@pytest.mark.parametrize("url", ["http://x", "ws://", "ws://x:99999", "x" * 5000])
def test_bad_origins_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        normalise_origin(url)
    assert len(str(raised.value)) < 200
