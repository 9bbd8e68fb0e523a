"""Room keys: what one peer seals and signs, only a peer of the same password and pair opens,
and only as coming from the holder of the sender's identity key."""

from __future__ import annotations

import pytest

from crdtsync.errors import ConfigError, SignalingError
from crdtsync.signaling.identity import Identity
from crdtsync.signaling.room_key import RoomKey

OFFER = b"v=0\r\na=fingerprint:sha-256 AB:CD\r\n"
ALICE, BOB, CAROL = Identity(), Identity(), Identity()
A, B, C = ALICE.peer_id, BOB.peer_id, CAROL.peer_id


@pytest.fixture(scope="module")
def key() -> RoomKey:
    return RoomKey.derive("correct horse", "notes")


def test_a_sealed_payload_opens_for_its_recipient(key: RoomKey) -> None:
    sealed = key.seal(OFFER, sender=ALICE, recipient=B)
    assert b"fingerprint" not in sealed
    assert key.open(sealed, sender=A, recipient=B) == OFFER
    assert sealed != key.seal(OFFER, sender=ALICE, recipient=B)  # a fresh nonce each time


def test_the_same_password_in_another_room_is_another_key(key: RoomKey) -> None:
    sealed = key.seal(OFFER, sender=ALICE, recipient=B)
    with pytest.raises(SignalingError, match=r"bad signature|does not open"):
        RoomKey.derive("correct horse", "other").open(sealed, sender=A, recipient=B)


@pytest.mark.parametrize(
    ("sender", "recipient", "why"),
    [(B, A, "signed by another peer"), (A, C, "bad signature")],
    ids=["reversed", "redirected"],
)
def test_a_payload_is_bound_to_its_sender_and_recipient(
    key: RoomKey, sender: str, recipient: str, why: str
) -> None:
    sealed = key.seal(OFFER, sender=ALICE, recipient=B)
    with pytest.raises(SignalingError, match=why):
        key.open(sealed, sender=sender, recipient=recipient)


def test_a_password_holder_cannot_speak_as_another_member(key: RoomKey) -> None:
    """Carol knows the password, but not Alice's identity key: whatever she seals for Bob
    opens only as hers, and re-signing Alice's payload does not make it hers either."""
    forged = key.seal(OFFER, sender=CAROL, recipient=B)
    with pytest.raises(SignalingError, match="signed by another peer"):
        key.open(forged, sender=A, recipient=B)
    assert key.open(forged, sender=C, recipient=B) == OFFER
    sealed = key.seal(OFFER, sender=ALICE, recipient=B)
    body = sealed[1 + 32 + 64 :]
    resigned = (
        sealed[:1]
        + CAROL.public_key
        + CAROL.sign(b"crdtsync sealed signal\0" + f"notes\0{C}\0{B}\0".encode() + body)
        + body
    )
    with pytest.raises(SignalingError, match="signed by another peer"):
        key.open(resigned, sender=A, recipient=B)
    with pytest.raises(SignalingError, match=r"bad signature|does not open"):
        key.open(resigned, sender=C, recipient=B)  # Alice's ciphertext is bound to Alice


def test_wrong_password_tampering_and_plaintext_are_refused(key: RoomKey) -> None:
    sealed = key.seal(OFFER, sender=ALICE, recipient=B)
    with pytest.raises(SignalingError, match="does not open"):
        RoomKey.derive("wrong", "notes").open(sealed, sender=A, recipient=B)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SignalingError, match="bad signature"):
        key.open(tampered, sender=A, recipient=B)
    for plain in (OFFER, b"", b"\x02short", b"\x01" + sealed[1:]):
        with pytest.raises(SignalingError, match="not sealed"):
            key.open(plain, sender=A, recipient=B)


def test_an_empty_password_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must not be empty"):
        RoomKey.derive("", "notes")
