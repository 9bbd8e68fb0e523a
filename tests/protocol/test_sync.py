"""The per-document sync state machine: one step 1 / step 2 exchange, nothing resent."""

from __future__ import annotations

import itertools
from typing import Any

import pycrdt
import pytest

from crdtsync.errors import ProtocolError
from crdtsync.protocol.sync import SyncInput, SyncSession, SyncState
from crdtsync.protocol.ymessages import (
    SyncType,
    parse_sync_message,
    sync_step1,
    sync_step2,
    sync_update,
)
from crdtsync.replica import Replica
from crdtsync.testing import doc_version

BASE = "the common ancestor both replicas hold " * 40


def divergent_pair() -> tuple[pycrdt.Doc, pycrdt.Doc]:
    a = pycrdt.Doc(client_id=1)
    a["text"] = text = pycrdt.Text(BASE)
    b = pycrdt.Doc(client_id=2)
    b.apply_update(a.get_update())
    text.insert(0, "ALPHA-ONLY ")
    b.get("text", type=pycrdt.Text).insert(len(BASE), " BRAVO-ONLY")
    return a, b


def test_divergent_replicas_sync_with_one_exchange_and_send_nothing_known() -> None:
    a, b = divergent_pair()
    left = SyncSession(Replica(a), origin="b")
    right = SyncSession(Replica(b), origin="a")

    (step1_a,) = left.start()
    (step1_b,) = right.start()
    assert parse_sync_message(step1_a)[0] is SyncType.STEP1
    assert left.state is right.state is SyncState.AWAITING_STEP2

    (step2_for_b,), done = left.receive_message(step1_b)
    assert not done
    (step2_for_a,), done = right.receive_message(step1_a)
    assert not done

    # Each step 2 holds the sender's own divergent edit and nothing of the shared base.
    kind, update_for_b = parse_sync_message(step2_for_b)
    assert kind is SyncType.STEP2
    assert b"ALPHA-ONLY" in update_for_b
    assert b"common ancestor" not in update_for_b
    _, update_for_a = parse_sync_message(step2_for_a)
    assert b"BRAVO-ONLY" in update_for_a
    assert b"common ancestor" not in update_for_a
    assert len(update_for_a) < len(BASE) // 10

    assert left.receive_message(step2_for_a) == ([], True)
    assert right.receive_message(step2_for_b) == ([], True)
    assert left.state is right.state is SyncState.SYNCED
    assert doc_version(a) == doc_version(b)
    assert str(a.get("text", type=pycrdt.Text)).startswith("ALPHA-ONLY the common")


def test_identical_replicas_exchange_empty_step2() -> None:
    a, b = divergent_pair()
    b.apply_update(a.get_update())
    a.apply_update(b.get_update())
    left = SyncSession(Replica(a), origin="b")
    (step1_b,) = SyncSession(Replica(b), origin="a").start()
    left.start()
    (step2,), _ = left.receive_message(step1_b)
    assert parse_sync_message(step2)[1] == b"\x00\x00"


def test_updates_stream_and_are_applied_with_their_origin() -> None:
    a, b = divergent_pair()
    seen: list[object] = []

    class Recording(Replica):
        def apply_remote(self, update: bytes, origin: object) -> None:
            seen.append(origin)
            super().apply_remote(update, origin)

    session = SyncSession(Recording(b), origin="link-to-a")
    session.start()
    sv = b.get_state()
    a.get("text", type=pycrdt.Text).insert(0, "new ")
    assert session.receive_message(sync_update(a.get_update(sv))) == ([], False)
    assert seen == ["link-to-a"]
    assert str(b.get("text", type=pycrdt.Text)).startswith("new ")


def test_rejected_update_is_a_protocol_error() -> None:
    session = SyncSession(Replica(pycrdt.Doc()), origin="x")
    session.start()
    with pytest.raises(ProtocolError, match="rejected"):
        session.receive_message(sync_update(b"\x01\x01garbage"))
    with pytest.raises(ProtocolError, match="varuint"):
        session.receive_message(sync_step1(b"\xff\xff"))


def test_an_update_claiming_more_groups_than_it_holds_never_reaches_pycrdt() -> None:
    """4 bytes claiming 2**28 client groups would make pycrdt reserve ~550 MB."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    session = SyncSession(Replica(doc), origin="x")
    session.start()
    with pytest.raises(ProtocolError, match="claims 268435455 client groups in 4 bytes"):
        session.receive_message(sync_update(b"\xff\xff\xff\x7f"))
    with pytest.raises(ProtocolError, match="varuint"):  # the same count in a state vector
        session.receive_message(sync_step1(b"\xff\xff\xff\x7f"))


REMOTE_INPUTS = {
    SyncInput.STEP1: sync_step1(pycrdt.Doc().get_state()),
    SyncInput.STEP2: sync_step2(b"\x00\x00"),
    SyncInput.UPDATE: sync_update(b"\x00\x00"),
}


def session_in(state: SyncState) -> SyncSession:
    session = SyncSession(Replica(pycrdt.Doc()), origin="x")
    if state is not SyncState.NEW:
        session.start()
    if state is SyncState.SYNCED:
        session.receive_message(REMOTE_INPUTS[SyncInput.STEP2])
    assert session.state is state
    return session


@pytest.mark.parametrize(("state", "event"), list(itertools.product(SyncState, SyncInput)))
def test_every_state_and_input_pair(state: SyncState, event: SyncInput) -> None:
    session = session_in(state)
    legal = not (state is SyncState.NEW and event is SyncInput.STEP2)  # step 2 needs a step 1
    if event is SyncInput.START:
        session.start()
        assert session.state is (
            SyncState.SYNCED if state is SyncState.SYNCED else SyncState.AWAITING_STEP2
        )
    elif legal:
        session.receive_message(REMOTE_INPUTS[event])
        expected = SyncState.SYNCED if event is SyncInput.STEP2 else state
        if (state, event) == (SyncState.NEW, SyncInput.STEP1):
            expected = SyncState.SYNCED  # an empty remote: it holds nothing we lack
        assert session.state is expected
    else:
        with pytest.raises(ProtocolError, match=f"{event.value} is not allowed in state 'new'"):
            session.receive_message(REMOTE_INPUTS[event])
        assert session.state is state


def test_a_session_not_started_answers_step1_and_takes_updates() -> None:
    """The mesh may hold back a link's step 1 (another link's first sync is in flight):
    meanwhile the link still serves the remote and takes its updates."""
    author = pycrdt.Doc()
    author.get("text", type=pycrdt.Text).insert(0, "held")
    replica = Replica(pycrdt.Doc())
    session = SyncSession(replica, origin="x")
    session.send_update(author.get_update())  # relaying needs no step 1 of ours
    (reply,), done = session.receive_message(sync_step1(author.get_state()))
    assert parse_sync_message(reply)[0] is SyncType.STEP2
    assert not done
    assert session.receive_message(sync_update(author.get_update())) == ([], False)
    assert str(replica.doc.get("text", type=pycrdt.Text)) == "held"
    assert session.state is SyncState.NEW
    session.start()
    assert session.receive_message(sync_step2(b"\x00\x00")) == ([], True)


def test_a_session_held_back_starts_once_the_remote_has_nothing_it_lacks() -> None:
    ours: pycrdt.Doc[Any] = pycrdt.Doc()
    ours.get("text", type=pycrdt.Text).insert(0, "ours and more")
    theirs: pycrdt.Doc[Any] = pycrdt.Doc()
    theirs.apply_update(ours.get_update())  # a remote that holds part of what we hold
    ours.get("text", type=pycrdt.Text).insert(0, "!")
    session = SyncSession(Replica(ours), origin="x")
    replies, done = session.receive_message(sync_step1(theirs.get_state()))
    assert [parse_sync_message(reply)[0] for reply in replies] == [SyncType.STEP2, SyncType.STEP1]
    assert session.state is SyncState.AWAITING_STEP2
    assert not done


def test_a_session_with_an_empty_remote_is_synced_by_its_step1() -> None:
    """A remote whose state vector is empty holds no structs, hence no deletions: nothing to
    fetch from it, so the session is synced without a step 1 of ours."""
    session = SyncSession(Replica(pycrdt.Doc()), origin="x")
    replies, done = session.receive_message(sync_step1(pycrdt.Doc().get_state()))
    assert [parse_sync_message(reply)[0] for reply in replies] == [SyncType.STEP2]
    assert session.state is SyncState.SYNCED
    assert done
