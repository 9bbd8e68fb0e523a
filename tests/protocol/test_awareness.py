"""Presence: local changes go out, remote ones relay once, silence expires, timers are exact."""

from __future__ import annotations

import pycrdt
import pytest

from crdtsync.errors import ProtocolError
from crdtsync.protocol.awareness import OutgoingPresence, Presence


def presence(client_id: int, now: float = 0.0, timeout: float = 30.0) -> Presence:
    return Presence(
        pycrdt.Awareness(pycrdt.Doc(client_id=client_id)), now=now, outdated_timeout=timeout
    )


def test_local_change_goes_to_everyone() -> None:
    alice = presence(1)
    alice.awareness.set_local_state({"name": "alice"})
    (outgoing,) = alice.updates_to_send(0.0)
    assert outgoing.origin is None
    bob = presence(2)
    bob.receive_update(outgoing.update, origin="link-a", now=0.0)
    assert bob.awareness.states[1] == {"name": "alice"}


def test_remote_change_is_relayed_once_with_its_origin() -> None:
    alice, bob = presence(1), presence(2)
    alice.awareness.set_local_state({"cursor": 4})
    (update,) = alice.updates_to_send(0.0)
    bob.receive_update(update.update, origin="link-a", now=0.1)
    assert bob.updates_to_send(0.1) == [OutgoingPresence(update.update, "link-a")]
    bob.receive_update(update.update, origin="link-c", now=0.2)  # the same state again
    assert bob.updates_to_send(0.2) == []


def test_timers_renew_ours_and_expire_theirs() -> None:
    alice = presence(1, timeout=30.0)
    bob = presence(2, now=0.0, timeout=30.0)
    alice.awareness.set_local_state({"name": "alice"})
    (update,) = alice.updates_to_send(0.0)
    bob.receive_update(update.update, origin="link-a", now=2.0)
    bob.updates_to_send(2.0)  # the relay of alice's state
    assert bob.get_timer() == 15.0  # bob's own renewal comes first
    bob.handle_timer(15.0)
    (renewal,) = bob.updates_to_send(15.0)
    assert renewal.origin is None
    assert bob.get_timer() == 30.0
    bob.handle_timer(30.0)
    bob.updates_to_send(30.0)
    assert bob.get_timer() == 32.0  # alice, silent since t=2, expires at 2 + 30
    bob.handle_timer(31.9)
    assert 1 in bob.awareness.states
    bob.handle_timer(32.0)
    assert 1 not in bob.awareness.states
    assert bob.updates_to_send(32.0) == []  # expiry is a local judgement, not broadcast


def test_forgetting_a_link_drops_who_was_heard_through_it() -> None:
    alice, bob = presence(1), presence(2)
    alice.awareness.set_local_state({"name": "alice"})
    (update,) = alice.updates_to_send(0.0)
    bob.receive_update(update.update, origin="link-a", now=0.0)
    bob.forget_origin("link-other")
    assert 1 in bob.awareness.states
    bob.forget_origin("link-a")
    assert 1 not in bob.awareness.states
    assert bob.updates_to_send(0.0) == [OutgoingPresence(update.update, "link-a")]


def test_full_state_carries_every_known_client() -> None:
    alice, bob, carol = presence(1), presence(2), presence(3)
    alice.awareness.set_local_state({"name": "alice"})
    bob.awareness.set_local_state({"name": "bob"})
    bob.receive_update(alice.updates_to_send(0.0)[0].update, origin="a", now=0.0)
    carol.receive_update(bob.full_state(), origin="b", now=0.0)
    assert carol.awareness.states[1] == {"name": "alice"}
    assert carol.awareness.states[2] == {"name": "bob"}


def test_undecodable_state_is_a_protocol_error() -> None:
    bob = presence(2)
    # One client (7), clock 1, state "{" which is not JSON: validated frames never carry
    # this, but the core must not let a JSON error escape as anything else.
    with pytest.raises(ProtocolError, match="awareness"):
        bob.receive_update(b"\x01\x07\x01\x01{", origin="x", now=0.0)
