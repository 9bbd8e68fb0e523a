"""One link, many documents: adding, removing, refusing and resuming them, and ABSENT."""

from __future__ import annotations

import pycrdt
import pytest

from crdtsync.errors import LocalProtocolError
from crdtsync.protocol.events import DocumentAbsent, DocumentRequested, Event, SyncCompleted
from crdtsync.protocol.frames import Absent, Hello, decode_frame, decode_frames, encode_frame
from crdtsync.protocol.link import LinkProtocol
from crdtsync.replica import Replica


def text_doc(content: str = "") -> pycrdt.Doc:
    doc: pycrdt.Doc = pycrdt.Doc()
    if content:
        doc["text"] = pycrdt.Text(content)
    return doc


def text(doc: pycrdt.Doc) -> str:
    return str(doc.get("text", type=pycrdt.Text))


class End:
    """One side of a link: its core and the replicas it carries, by doc id."""

    def __init__(self, name: str, remote: str, docs: dict[str, pycrdt.Doc]) -> None:
        self.replicas = {doc_id: Replica(doc, doc_id=doc_id) for doc_id, doc in docs.items()}
        self.link = LinkProtocol(name, dict(self.replicas), expected_peer=remote)
        self.events: list[Event] = []

    def add(self, doc_id: str, doc: pycrdt.Doc, *, sync: bool = True) -> None:
        self.replicas[doc_id] = Replica(doc, doc_id=doc_id)
        self.link.add_document(doc_id, self.replicas[doc_id], sync=sync)

    def requested(self) -> list[str]:
        return [event.doc_id for event in self.events if isinstance(event, DocumentRequested)]


def exchange(a: End, b: End, *, answer: bool = True, rounds: int = 20) -> None:
    """Deliver both ways until quiet; with ``answer``, each side refuses what it is asked
    for and does not carry (as a mesh without that document does)."""
    for _ in range(rounds):
        moved = 0
        for sender, receiver in ((a, b), (b, a)):
            for message in sender.link.data_to_send():
                moved += 1
                receiver.link.receive_data(message, 0.0)
                events = receiver.link.events_received()
                receiver.events += events
                for event in events:
                    if answer and isinstance(event, DocumentRequested):
                        receiver.link.refuse_document(event.doc_id)
        if not moved:
            return
    raise AssertionError(f"still talking after {rounds} rounds")


def pair(docs_a: dict[str, pycrdt.Doc], docs_b: dict[str, pycrdt.Doc]) -> tuple[End, End]:
    a, b = End("alice", "bob", docs_a), End("bob", "alice", docs_b)
    a.link.start(0.0)
    b.link.start(0.0)
    return a, b


def test_a_document_the_remote_lacks_is_refused_and_settles() -> None:
    a, b = pair({"x": text_doc("x"), "y": text_doc("only alice")}, {"x": text_doc()})
    exchange(a, b)
    assert b.requested() == ["y"]
    assert DocumentAbsent("y") in a.events
    assert a.link.settled("y")
    assert a.link.synced
    assert b.link.synced
    assert text(b.replicas["x"].doc) == "x"
    a.replicas["y"].doc.get("text", type=pycrdt.Text).insert(0, "more ")
    for outgoing in a.replicas["y"].take_outgoing():
        a.link.send_update("y", outgoing.update)
    assert a.link.data_to_send() == []  # nothing goes for a document the remote lacks


def test_a_document_added_later_syncs_both_ways_after_absent() -> None:
    a, b = pair({"x": text_doc(), "y": text_doc("from alice")}, {"x": text_doc()})
    exchange(a, b)
    assert a.link.settled("y")
    b_doc = text_doc("from bob ")
    b.add("y", b_doc)
    assert not b.link.synced
    exchange(a, b)
    assert text(b_doc) == text(a.replicas["y"].doc)
    assert "from alice" in text(b_doc)
    assert "from bob" in text(b_doc)
    assert SyncCompleted("y") in b.events
    assert SyncCompleted("y") in a.events
    assert a.link.synced
    assert b.link.synced


def test_a_requested_document_added_in_answer_gets_the_pending_frames() -> None:
    a, b = pair({"y": text_doc("from alice")}, {})
    exchange(a, b, answer=False)
    assert b.requested() == ["y"]
    b_doc = text_doc()
    b.add("y", b_doc)  # the held step 1 is answered, and b's own goes out
    exchange(a, b)
    assert text(b_doc) == "from alice"
    assert a.link.synced
    assert b.link.synced


def test_removing_a_document_tells_the_remote() -> None:
    a, b = pair({"x": text_doc("x")}, {"x": text_doc()})
    exchange(a, b)
    b.link.remove_document("x")
    (message,) = b.link.data_to_send()
    assert decode_frame(message) == Absent("x")
    a.link.receive_data(message, 0.0)
    assert DocumentAbsent("x") in a.link.events_received()
    assert not b.link.carries("x")
    with pytest.raises(LocalProtocolError, match="unknown document"):
        b.link.send_update("x", b"\x00\x00")


def test_an_unloaded_document_comes_back_on_its_next_frame() -> None:
    a, b = pair({"x": text_doc("x")}, {"x": text_doc()})
    exchange(a, b)
    b.link.remove_document("x", tell=False)  # unloaded here: the remote keeps sending
    assert b.link.data_to_send() == []
    a.replicas["x"].doc.get("text", type=pycrdt.Text).insert(1, "!")
    for outgoing in a.replicas["x"].take_outgoing():
        a.link.send_update("x", outgoing.update)
    exchange(a, b, answer=False)
    assert b.requested() == ["x"]
    reloaded = text_doc()
    reloaded.apply_update(b.replicas["x"].doc.get_update())
    b.add("x", reloaded)  # the pending update applies, and a step 1 fetches anything missed
    exchange(a, b)
    assert text(reloaded) == "x!"
    assert b.link.settled("x")


def test_adding_a_carried_document_or_refusing_one_is_a_local_error() -> None:
    a, _ = pair({"x": text_doc()}, {})
    with pytest.raises(LocalProtocolError, match="already"):
        a.link.add_document("x", Replica(text_doc()))
    with pytest.raises(LocalProtocolError, match="remove it instead"):
        a.link.refuse_document("x")


def test_hello_travels_alone_and_frames_queued_together_travel_together() -> None:
    end = End("alice", "bob", {"x": text_doc("x"), "y": text_doc("y")})
    end.link.start(0.0)
    hello, *steps = end.link.data_to_send()
    assert decode_frames(hello) == [Hello("alice")]  # a peer of another version reads it
    assert [len(decode_frames(message)) for message in steps] == [2]
    end.link.receive_data(encode_frame(Hello("bob")), 0.0)
    for word in ("a", "b", "c"):
        end.link.send_update("x", update_of(word))
    (message,) = end.link.data_to_send()
    assert len(decode_frames(message)) == 3


def update_of(content: str) -> bytes:
    doc = text_doc(content)
    return doc.get_update()
