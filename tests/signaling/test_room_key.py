"""Room keys: what one peer seals, only a peer of the same password and pair opens."""

from __future__ import annotations

import pytest

from crdtsync.errors import ConfigError, SignalingError
from crdtsync.signaling.room_key import RoomKey

OFFER = b"v=0\r\na=fingerprint:sha-256 AB:CD\r\n"


@pytest.fixture(scope="module")
def key() -> RoomKey:
    return RoomKey.derive("correct horse", "notes")


def test_a_sealed_payload_opens_for_its_recipient(key: RoomKey) -> None:
    sealed = key.seal(OFFER, sender="a", recipient="b")
    assert b"fingerprint" not in sealed
    assert key.open(sealed, sender="a", recipient="b") == OFFER
    assert sealed != key.seal(OFFER, sender="a", recipient="b")  # a fresh nonce each time


def test_the_same_password_in_another_room_is_another_key(key: RoomKey) -> None:
    sealed = key.seal(OFFER, sender="a", recipient="b")
    with pytest.raises(SignalingError, match="does not open"):
        RoomKey.derive("correct horse", "other").open(sealed, sender="a", recipient="b")


@pytest.mark.parametrize(
    ("sender", "recipient"),
    [("b", "a"), ("c", "b"), ("a", "c")],
    ids=["reversed", "spoof", "replay"],
)
def test_a_payload_is_bound_to_its_sender_and_recipient(
    key: RoomKey, sender: str, recipient: str
) -> None:
    sealed = key.seal(OFFER, sender="a", recipient="b")
    with pytest.raises(SignalingError, match="does not open"):
        key.open(sealed, sender=sender, recipient=recipient)


def test_wrong_password_tampering_and_plaintext_are_refused(key: RoomKey) -> None:
    sealed = key.seal(OFFER, sender="a", recipient="b")
    with pytest.raises(SignalingError, match="does not open"):
        RoomKey.derive("wrong", "notes").open(sealed, sender="a", recipient="b")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SignalingError, match="does not open"):
        key.open(tampered, sender="a", recipient="b")
    for plain in (OFFER, b"", b"\x01short"):
        with pytest.raises(SignalingError, match="not sealed"):
            key.open(plain, sender="a", recipient="b")


def test_an_empty_password_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must not be empty"):
        RoomKey.derive("", "notes")
