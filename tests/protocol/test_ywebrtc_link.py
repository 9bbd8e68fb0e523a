"""The y-webrtc link core: raw y-protocols frames, size limit, and what Yjs peers may send."""

from __future__ import annotations

import random

import pycrdt
import pytest

from crdtsync.errors import LocalProtocolError
from crdtsync.protocol.events import (
    AwarenessQueried,
    AwarenessReceived,
    HelloReceived,
    LinkClosed,
    SyncCompleted,
)
from crdtsync.protocol.link import LinkState
from crdtsync.protocol.ymessages import parse_sync_message, sync_step2, sync_update
from crdtsync.protocol.ywebrtc_link import (
    YWEBRTC_MAX_MESSAGE_SIZE,
    YWebrtcLinkProtocol,
    YWebrtcLinkSettings,
)
from crdtsync.replica import Replica


def make_link(local: str, remote: str, doc: pycrdt.Doc, **settings: float) -> YWebrtcLinkProtocol:
    return YWebrtcLinkProtocol(
        local, {"doc": Replica(doc)}, expected_peer=remote, settings=YWebrtcLinkSettings(**settings)
    )


def transfer(sender: YWebrtcLinkProtocol, receiver: YWebrtcLinkProtocol, now: float) -> int:
    messages = sender.data_to_send()
    for message in messages:
        assert len(message) <= sender.settings.max_message_size
        receiver.receive_data(message, now)
    return len(messages)


def settle(a: YWebrtcLinkProtocol, b: YWebrtcLinkProtocol) -> None:
    for _ in range(20):
        if transfer(a, b, 0.0) + transfer(b, a, 0.0) == 0:
            return
    raise AssertionError("links still talking after 20 rounds")


def text_doc(content: str, client_id: int) -> pycrdt.Doc:
    doc = pycrdt.Doc(client_id=client_id)
    doc["text"] = pycrdt.Text(content)
    return doc


def test_start_opens_at_once_and_sends_step1_as_yjs_does() -> None:
    link = make_link("a", "b", pycrdt.Doc())
    link.start(0.0)
    assert link.state is LinkState.OPEN
    assert link.events_received() == [HelloReceived("b", frozenset())]
    # Step 1 of an empty doc, byte for byte what y-webrtc sends: 00 00 01 00.
    assert link.data_to_send() == [b"\x00\x00\x01\x00"]


def test_pair_converges_and_reports_sync() -> None:
    doc_a, doc_b = text_doc("hello ", 1), text_doc("world", 2)
    a, b = make_link("a", "b", doc_a), make_link("b", "a", doc_b)
    a.start(0.0)
    b.start(0.0)
    a.events_received()
    b.events_received()
    settle(a, b)
    assert str(doc_a["text"]) == str(doc_b["text"])
    assert sorted(str(doc_a["text"])) == sorted("hello world")
    assert a.synced
    assert b.synced


def test_sync_completed_event_once() -> None:
    a, b = make_link("a", "b", text_doc("x", 1)), make_link("b", "a", text_doc("y", 2))
    a.start(0.0)
    b.start(0.0)
    settle(a, b)
    events = a.events_received()
    assert events.count(SyncCompleted("doc")) == 1


def test_large_step2_is_split_into_frames_that_fit() -> None:
    rng = random.Random(7)
    content = "".join(rng.choice("abcdefghij ") for _ in range(700_000))
    big = text_doc(content, 1)
    newcomer = pycrdt.Doc(client_id=2)
    a, b = make_link("a", "b", big), make_link("b", "a", newcomer)
    a.start(0.0)
    b.start(0.0)
    transfer(b, a, 0.0)  # b's step 1 reaches a
    frames = a.data_to_send()
    assert all(len(frame) <= YWEBRTC_MAX_MESSAGE_SIZE for frame in frames)
    kinds = [parse_sync_message(frame)[0].name for frame in frames[1:]]  # frames[0]: step 1
    assert len(kinds) > 2
    assert kinds[-1] == "STEP2"
    assert set(kinds[:-1]) == {"UPDATE"}
    for frame in frames:
        b.receive_data(frame, 0.0)
    assert str(newcomer.get("text", type=pycrdt.Text)) == content
    assert SyncCompleted("doc") in b.events_received()


def test_large_update_is_split_too() -> None:
    doc_a, doc_b = pycrdt.Doc(client_id=1), pycrdt.Doc(client_id=2)
    a, b = make_link("a", "b", doc_a), make_link("b", "a", doc_b)
    a.start(0.0)
    b.start(0.0)
    settle(a, b)
    source = text_doc("z" * 600_000, 3)
    a.send_update("doc", source.get_update())
    frames = a.data_to_send()
    assert len(frames) >= 3
    assert all(len(f) <= YWEBRTC_MAX_MESSAGE_SIZE for f in frames)
    for frame in frames:
        b.receive_data(frame, 0.0)
    assert str(doc_b.get("text", type=pycrdt.Text)) == "z" * 600_000


@pytest.mark.parametrize(
    "frame",
    [
        b"",  # y-webrtc's answer to a frame it cannot read
        b"\x07",  # an unknown message type
        b"\x04\x01\x24" + b"0" * 36,  # messageBcPeerId: only for BroadcastChannel
        b"\x00\x09\x00",  # an unknown sync type
        b"\x00\x02\x05\x01",  # an update whose length lies
        b"\x01\x03\x01\xff",  # an awareness message cut short
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # a varuint with no end
    ],
)
def test_whatever_a_yjs_peer_sends_never_closes_or_raises(frame: bytes) -> None:
    doc = text_doc("kept", 1)
    link = make_link("a", "b", doc)
    link.start(0.0)
    link.events_received()
    link.data_to_send()
    link.receive_data(frame, 0.0)
    assert link.state is LinkState.OPEN
    assert link.data_to_send() == []  # never an empty or error reply
    assert link.events_received() == []
    assert str(doc["text"]) == "kept"


def test_query_awareness_asks_the_mesh_for_every_state() -> None:
    link = make_link("a", "b", pycrdt.Doc())
    link.start(0.0)
    link.events_received()
    link.receive_data(b"\x03", 0.0)
    assert link.events_received() == [AwarenessQueried("doc")]


def test_awareness_with_53_bit_client_ids() -> None:
    doc = pycrdt.Doc(client_id=2**53 - 1)
    awareness = pycrdt.Awareness(doc)
    awareness.set_local_state({"user": {"name": "P"}})
    update = awareness.encode_awareness_update([awareness.client_id])
    a = make_link("a", "b", doc)
    a.start(0.0)
    a.data_to_send()
    a.send_awareness("doc", update)
    (frame,) = a.data_to_send()
    assert frame[0] == 1  # messageAwareness, no envelope
    b = make_link("b", "a", pycrdt.Doc())
    b.start(0.0)
    b.events_received()
    b.receive_data(frame, 0.0)
    assert b.events_received() == [AwarenessReceived("doc", update)]


def test_unasked_step2_is_taken_as_an_update() -> None:
    doc = pycrdt.Doc(client_id=9)
    link = make_link("a", "b", doc)
    link.start(0.0, sync=False)
    link.data_to_send()
    link.events_received()
    link.receive_data(sync_step2(text_doc("from afar", 4).get_update()), 0.0)
    assert str(doc.get("text", type=pycrdt.Text)) == "from afar"
    assert link.state is LinkState.OPEN


def test_flood_closes_the_link() -> None:
    link = make_link("a", "b", pycrdt.Doc(), max_messages_per_second=10.0, message_burst=5)
    link.start(0.0)
    link.events_received()
    for _ in range(6):
        link.receive_data(sync_update(b"\x00\x00"), 0.0)
    (event,) = link.events_received()
    assert isinstance(event, LinkClosed)
    assert "flood" in event.reason
    assert link.state is LinkState.CLOSED


def test_one_document_per_link() -> None:
    with pytest.raises(LocalProtocolError):
        YWebrtcLinkProtocol(
            "a",
            {"x": Replica(pycrdt.Doc()), "y": Replica(pycrdt.Doc())},
            expected_peer="b",
        )
    link = make_link("a", "b", pycrdt.Doc())
    with pytest.raises(LocalProtocolError):
        link.send_update("other", b"\x00\x00")
