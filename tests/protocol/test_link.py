"""The link core: handshake, sync, chunking, heartbeats, and hostile bytes, in virtual time."""

from __future__ import annotations

import dataclasses

import pycrdt
import pytest

from crdtsync.errors import LocalProtocolError
from crdtsync.protocol.events import (
    AwarenessReceived,
    Event,
    HelloReceived,
    LinkClosed,
    LinksReceived,
    SyncCompleted,
)
from crdtsync.protocol.frames import (
    Bye,
    CloseCode,
    Hello,
    Ping,
    Pong,
    Relay,
    Resync,
    Sync,
    decode_frame,
    decode_frames,
    encode_frame,
)
from crdtsync.protocol.link import Arrival, LinkProtocol, LinkSettings, LinkState
from crdtsync.protocol.ymessages import SyncType, parse_sync_message, sync_update
from crdtsync.replica import Replica
from crdtsync.testing import doc_version

SETTINGS = LinkSettings(heartbeat_interval=1.0, dead_after=5.0, hello_timeout=5.0)


def make_link(local: str, remote: str | None, doc: pycrdt.Doc, **settings: float) -> LinkProtocol:
    return LinkProtocol(
        local,
        {"doc": Replica(doc)},
        expected_peer=remote,
        settings=dataclasses.replace(SETTINGS, **settings),
    )


def transfer(sender: LinkProtocol, receiver: LinkProtocol, now: float) -> int:
    """Deliver everything ``sender`` has queued; returns how many messages moved."""
    messages = sender.data_to_send()
    for message in messages:
        receiver.receive_data(message, now)
    return len(messages)


def roundtrip_until_done(a: LinkProtocol, b: LinkProtocol, now: float, max_rounds: int = 20) -> int:
    for rounds in range(max_rounds):
        if transfer(a, b, now) + transfer(b, a, now) == 0:
            return rounds
    raise AssertionError(f"links still talking after {max_rounds} rounds")


def started_pair(
    doc_a: pycrdt.Doc, doc_b: pycrdt.Doc, **settings: float
) -> tuple[LinkProtocol, LinkProtocol]:
    a = make_link("alice", "bob", doc_a, **settings)
    b = make_link("bob", "alice", doc_b, **settings)
    a.start(0.0)
    b.start(0.0)
    return a, b


def test_handshake_and_initial_sync() -> None:
    doc_a, doc_b = pycrdt.Doc(), pycrdt.Doc()
    doc_a["text"] = pycrdt.Text("from alice")
    a, b = started_pair(doc_a, doc_b)
    assert a.state is LinkState.OPENING
    roundtrip_until_done(a, b, 0.0)
    assert a.state is b.state is LinkState.OPEN
    assert a.synced
    assert b.synced
    caps: frozenset[str] = frozenset()
    assert a.events_received() == [HelloReceived("bob", caps), SyncCompleted("doc")]
    assert b.events_received() == [HelloReceived("alice", caps), SyncCompleted("doc")]
    assert doc_version(doc_a) == doc_version(doc_b)
    assert str(doc_b.get("text", type=pycrdt.Text)) == "from alice"


def test_updates_presence_and_links_flow_after_open() -> None:
    doc_a, doc_b = pycrdt.Doc(), pycrdt.Doc()
    a, b = started_pair(doc_a, doc_b)
    roundtrip_until_done(a, b, 0.0)
    b.events_received()
    doc_a["m"] = pycrdt.Map({"k": 1})
    a.send_update("doc", doc_a.get_update())
    awareness = pycrdt.Awareness(doc_a)
    a.send_awareness("doc", awareness.encode_awareness_update([doc_a.client_id]))
    a.send_links(frozenset({"carol"}))
    transfer(a, b, 0.1)
    events = b.events_received()
    assert isinstance(events[0], AwarenessReceived)
    assert events[1] == LinksReceived(frozenset({"carol"}))
    assert doc_b.get("m", type=pycrdt.Map).to_py() == {"k": 1}


def test_an_update_names_its_sources_and_arrives_with_them() -> None:
    """Sources go out in a RELAY frame and come back as the origin the update is applied
    with; a plain update, or a step 2, comes with sources not known."""
    doc_a, doc_b = pycrdt.Doc(), pycrdt.Doc()
    replica_b = Replica(doc_b)
    a = make_link("alice", "bob", doc_a)
    b = LinkProtocol("bob", {"doc": replica_b}, expected_peer="alice", settings=SETTINGS)
    a.start(0.0)
    b.start(0.0)
    roundtrip_until_done(a, b, 0.0)
    replica_b.take_outgoing()
    doc_a["text"] = pycrdt.Text("hi")
    a.send_update("doc", doc_a.get_update(), frozenset({"alice", "carol"}))
    (message,) = a.data_to_send()
    assert decode_frame(message) == Relay(
        "doc", sync_update(doc_a.get_update()), frozenset({"alice", "carol"})
    )
    b.receive_data(message, 0.1)
    doc_a["more"] = pycrdt.Text("!")
    a.send_update("doc", doc_a.get_update())
    (plain,) = a.data_to_send()
    assert isinstance(decode_frame(plain), Sync)
    b.receive_data(plain, 0.1)
    assert [item.origin for item in replica_b.take_outgoing()] == [
        Arrival(b, frozenset({"alice", "carol"})),
        Arrival(b, None),
    ]


def test_a_resync_request_is_answered_with_step_1() -> None:
    a, b = started_pair(pycrdt.Doc(), pycrdt.Doc())
    roundtrip_until_done(a, b, 0.0)
    a.request_resync("doc")
    (message,) = a.data_to_send()
    assert decode_frame(message) == Resync("doc")
    b.receive_data(message, 0.1)
    (answer,) = b.data_to_send()
    frame = decode_frame(answer)
    assert isinstance(frame, Sync)
    assert parse_sync_message(frame.message)[0] is SyncType.STEP1


def test_large_update_is_chunked_and_reassembled() -> None:
    doc_a, doc_b = pycrdt.Doc(), pycrdt.Doc()
    doc_a["text"] = pycrdt.Text("x" * 300_000)
    a, b = started_pair(doc_a, doc_b, max_message_size=16_384)
    transfer(a, b, 0.0)
    transfer(b, a, 0.0)  # bob's step 1 makes alice answer with a 300 kB step 2
    step2_pieces = a.data_to_send()
    assert len(step2_pieces) > 300_000 // 16_384
    for message in step2_pieces:
        assert len(message) <= 16_384
        b.receive_data(message, 0.0)
    roundtrip_until_done(a, b, 0.0)
    assert b.synced
    assert len(str(doc_b.get("text", type=pycrdt.Text))) == 300_000


def test_timers_ping_then_declare_the_silent_peer_dead() -> None:
    a, b = started_pair(pycrdt.Doc(), pycrdt.Doc())
    roundtrip_until_done(a, b, 0.0)
    a.events_received()
    assert a.get_timer() == 1.0
    a.handle_timer(1.0)
    (ping,) = a.data_to_send()
    assert isinstance(decode_frame(ping), Ping)
    assert a.get_timer() == 2.0
    for second in (2.0, 3.0, 4.0):
        a.handle_timer(second)
    assert a.get_timer() == 5.0
    a.handle_timer(5.0)
    assert a.state is LinkState.CLOSED
    (closed,) = a.events_received()
    assert closed == LinkClosed(CloseCode.TIMEOUT, "no frame from the peer for 5.0 s", False)
    assert a.get_timer() is None


def test_pong_keeps_the_link_alive() -> None:
    a, b = started_pair(pycrdt.Doc(), pycrdt.Doc())
    roundtrip_until_done(a, b, 0.0)
    for second in range(1, 20):
        a.handle_timer(float(second))
        b.handle_timer(float(second))
        roundtrip_until_done(a, b, float(second))
    assert a.state is b.state is LinkState.OPEN


def test_the_pong_to_our_last_ping_times_the_round_trip() -> None:
    a, b = started_pair(pycrdt.Doc(), pycrdt.Doc())
    roundtrip_until_done(a, b, 0.0)
    assert a.round_trip_time is None  # no heartbeat yet
    a.handle_timer(1.0)
    transfer(a, b, 1.0)  # the PING
    b.receive_data(encode_frame(Pong(99)), 1.01)  # a PONG to nothing we sent: ignored
    assert b.round_trip_time is None
    transfer(b, a, 1.25)  # its PONG, a quarter of a second later
    assert a.round_trip_time == 0.25
    a.receive_data(encode_frame(Pong(1)), 3.0)  # the same PONG again times nothing
    assert a.round_trip_time == 0.25


def test_no_hello_in_time_closes() -> None:
    a = make_link("alice", "bob", pycrdt.Doc())
    a.start(10.0)
    assert a.get_timer() == 11.0
    for second in (11.0, 12.0, 13.0, 14.0):
        a.handle_timer(second)
    a.handle_timer(15.0)
    assert a.state is LinkState.CLOSED
    assert a.events_received()[-1].code == CloseCode.TIMEOUT  # type: ignore[union-attr]


def closes_with(link: LinkProtocol, code: int) -> LinkClosed:
    events: list[Event] = link.events_received()
    closed = events[-1]
    assert isinstance(closed, LinkClosed)
    assert closed.code == code
    assert not closed.by_remote
    assert link.state is LinkState.CLOSED
    bye = decode_frames(link.data_to_send()[-1])[-1]
    assert isinstance(bye, Bye)
    assert bye.code == code
    return closed


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xc1", b"not msgpack at all", encode_frame(Ping(1))[:-1], b"\x93\x63\xa0\xc0"],
)
def test_garbage_closes_the_link_with_a_reason(garbage: bytes) -> None:
    doc = pycrdt.Doc()
    doc["text"] = pycrdt.Text("kept")
    before = doc_version(doc)
    a, b = started_pair(doc, pycrdt.Doc())
    roundtrip_until_done(a, b, 0.0)
    a.events_received()
    a.receive_data(garbage, 0.5)
    closed = closes_with(a, CloseCode.PROTOCOL_ERROR)
    assert closed.reason
    assert doc_version(doc) == before
    a.receive_data(encode_frame(Ping(2)), 0.6)  # ignored once closed
    assert a.data_to_send() == []


def test_frames_before_hello_are_refused() -> None:
    a = make_link("alice", "bob", pycrdt.Doc())
    a.start(0.0)
    a.receive_data(encode_frame(Sync("doc", sync_update(b"\x00\x00"))), 0.0)
    assert "before HELLO" in closes_with(a, CloseCode.PROTOCOL_ERROR).reason


def test_hello_from_the_wrong_peer_is_refused() -> None:
    a = make_link("alice", "bob", pycrdt.Doc())
    a.start(0.0)
    a.receive_data(encode_frame(Hello(peer_id="mallory")), 0.0)
    assert "mallory" in closes_with(a, CloseCode.PROTOCOL_ERROR).reason


def test_a_rejected_update_closes_and_leaves_the_doc_untouched() -> None:
    doc = pycrdt.Doc()
    doc["text"] = pycrdt.Text("kept")
    before = doc_version(doc)
    a, b = started_pair(doc, pycrdt.Doc())
    roundtrip_until_done(a, b, 0.0)
    a.events_received()
    a.receive_data(encode_frame(Sync("doc", sync_update(b"\x01\x01\x07garbage"))), 1.0)
    closes_with(a, CloseCode.PROTOCOL_ERROR)
    assert doc_version(doc) == before


def test_bye_from_remote_closes() -> None:
    a, b = started_pair(pycrdt.Doc(), pycrdt.Doc())
    roundtrip_until_done(a, b, 0.0)
    a.events_received()
    b.close(CloseCode.GOING_AWAY, "leaving")
    transfer(b, a, 0.1)
    assert a.events_received() == [LinkClosed(CloseCode.GOING_AWAY, "leaving", True)]
    assert a.state is LinkState.CLOSED


def test_misuse_raises_local_protocol_error() -> None:
    a = make_link("alice", "bob", pycrdt.Doc())
    a.start(0.0)
    with pytest.raises(LocalProtocolError):
        a.start(0.0)
    with pytest.raises(LocalProtocolError, match="unknown document"):
        a.send_update("other", b"\x00\x00")
