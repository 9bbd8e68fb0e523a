"""The msgpack envelope: exact round trips, chunking, and only ProtocolError for bad bytes."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtsync.errors import LocalProtocolError, ProtocolError
from crdtsync.protocol.chunks import Reassembler, batch_messages, split_frame
from crdtsync.protocol.frames import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_CAPABILITIES,
    MAX_DOC_ID_LENGTH,
    MAX_LINK_IDS,
    MAX_PEER_ID_LENGTH,
    PROTOCOL_VERSION,
    Absent,
    Awareness,
    Bye,
    Chunk,
    CloseCode,
    Frame,
    FrameKind,
    Hello,
    Links,
    Ping,
    Pong,
    Relay,
    Resync,
    Sync,
    decode_frame,
    decode_frames,
    encode_frame,
)
from crdtsync.protocol.ymessages import (
    SyncType,
    parse_sync_message,
    sync_step1,
    sync_step2,
    sync_update,
)

UINT64 = st.integers(0, 2**64 - 1)
peer_ids = st.text(min_size=1, max_size=MAX_PEER_ID_LENGTH)
doc_ids = st.text(max_size=MAX_DOC_ID_LENGTH)


def awareness_bytes(entries: list[tuple[int, int, dict[str, int] | None]]) -> bytes:
    parts = [pycrdt.write_var_uint(len(entries))]
    for client_id, clock, state in entries:
        text = json.dumps(state).encode()
        parts += [pycrdt.write_var_uint(client_id), pycrdt.write_var_uint(clock)]
        parts += [pycrdt.write_var_uint(len(text)), text]
    return pycrdt.create_awareness_message(b"".join(parts))


sync_messages = st.builds(
    lambda kind, payload: pycrdt._sync.create_message(payload, kind),
    st.sampled_from(SyncType),
    st.binary(max_size=600),
)
awareness_messages = st.lists(
    st.tuples(
        st.integers(0, 2**32),
        st.integers(0, 2**32),
        st.none() | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    ),
    max_size=4,
).map(awareness_bytes)

frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(
        Hello,
        peer_id=peer_ids,
        capabilities=st.frozensets(st.text(min_size=1, max_size=64), max_size=MAX_CAPABILITIES),
    ),
    st.builds(Sync, doc_ids, sync_messages),
    st.builds(Awareness, doc_ids, awareness_messages),
    st.builds(Ping, UINT64),
    st.builds(Pong, UINT64),
    st.integers(2, 50).flatmap(
        lambda count: st.builds(
            Chunk, UINT64, st.integers(0, count - 1), st.just(count), st.binary(min_size=1)
        )
    ),
    st.builds(Bye, st.sampled_from(CloseCode) | UINT64, st.text(max_size=200)),
    st.builds(Links, st.frozensets(peer_ids, max_size=20)),
    st.builds(Absent, doc_ids),
    st.builds(
        Relay,
        doc_ids,
        st.binary(max_size=600).map(sync_update),
        st.frozensets(peer_ids, min_size=1, max_size=20),
    ),
    st.builds(Resync, doc_ids),
)


def packed(*wire: Any) -> bytes:
    return msgpack.packb(list(wire), use_bin_type=True)


def real_doc(text: str) -> pycrdt.Doc:  # type: ignore[type-arg]
    doc: pycrdt.Doc = pycrdt.Doc()  # type: ignore[type-arg]
    doc["text"] = pycrdt.Text(text)
    return doc


# -- round trips ------------------------------------------------------------------------------


@given(frames)
def test_every_frame_round_trips_exactly(frame: Frame) -> None:
    encoded = encode_frame(frame)
    assert decode_frame(encoded) == frame
    assert encode_frame(decode_frame(encoded)) == encoded


def test_wire_layout_is_the_documented_one() -> None:
    step1 = sync_step1(b"\x00")
    assert encode_frame(Hello("bob", capabilities=frozenset({"z", "a"}))) == packed(
        0, "", {"v": PROTOCOL_VERSION, "id": "bob", "caps": ["a", "z"]}
    )
    assert encode_frame(Sync("doc", step1)) == packed(1, "doc", step1)
    assert encode_frame(Ping(7)) == packed(3, "", 7)
    assert encode_frame(Pong(7)) == packed(4, "", 7)
    assert encode_frame(Chunk(1, 0, 2, b"ab")) == packed(5, "", [1, 0, 2, b"ab"])
    assert encode_frame(Bye(CloseCode.NORMAL, "done")) == packed(6, "", [1000, "done"])
    assert encode_frame(Links(frozenset({"b", "a"}))) == packed(7, "", ["a", "b"])
    assert encode_frame(Absent("doc")) == packed(8, "doc", None)
    update = sync_update(b"\x00\x00")
    relay = Relay("doc", update, frozenset({"b", "a"}))
    assert encode_frame(relay) == packed(9, "doc", [update, ["a", "b"]])
    assert encode_frame(Resync("doc")) == packed(10, "doc", None)


def test_y_protocols_bytes_travel_untouched_and_sync_real_docs() -> None:
    alice, bob = real_doc("shared text " * 50), real_doc("")
    request = decode_frame(encode_frame(Sync("notes", sync_step1(bob.get_state()))))
    assert isinstance(request, Sync)
    assert request.message == pycrdt.create_sync_message(bob)
    _, state = parse_sync_message(request.message)
    reply = decode_frame(encode_frame(Sync("notes", sync_step2(alice.get_update(state)))))
    assert isinstance(reply, Sync)
    kind, update = parse_sync_message(reply.message)
    assert kind is SyncType.STEP2
    bob.apply_update(update)
    assert str(bob.get("text", type=pycrdt.Text)) == "shared text " * 50


# -- chunking ---------------------------------------------------------------------------------


def split_and_reassemble(encoded: bytes, max_message_size: int, message_id: int = 9) -> list[bytes]:
    parts = split_frame(encoded, message_id=message_id, max_message_size=max_message_size)
    assert all(len(part) <= max_message_size for part in parts)
    if len(encoded) <= max_message_size:
        assert parts == [encoded]
        return parts
    reassembler = Reassembler()
    results = []
    held = 0
    for part in parts:
        chunk = decode_frame(part)
        assert isinstance(chunk, Chunk)
        assert (chunk.message_id, chunk.count) == (message_id, len(parts))
        results.append(reassembler.feed(chunk))
        held += len(chunk.data)
        assert reassembler.buffered == (0 if results[-1] is not None else held)
    assert results[:-1] == [None] * (len(parts) - 1)
    assert results[-1] == encoded
    assert reassembler.buffered == 0
    return parts


@given(st.builds(Sync, doc_ids, sync_messages), st.integers(64, 300), UINT64)
def test_split_and_reassemble_round_trip(frame: Sync, max_message_size: int, mid: int) -> None:
    encoded = encode_frame(frame)
    split_and_reassemble(encoded, max_message_size, mid)
    assert decode_frame(encoded) == frame


@given(st.integers(64, 300), st.integers(-3, 3))
def test_split_around_the_boundary(max_message_size: int, delta: int) -> None:
    # Find a frame whose encoding is exactly max_message_size + delta bytes (codes 0, 200 and
    # 1000 take 1, 2 and 3 bytes, covering the lengths where the str header grows).
    candidates = (Bye(code, "x" * n) for n in range(max_message_size) for code in (0, 200, 1000))
    encoded = next(
        data for data in map(encode_frame, candidates) if len(data) == max_message_size + delta
    )
    assert len(encoded) == max_message_size + delta
    parts = split_and_reassemble(encoded, max_message_size)
    assert (len(parts) == 1) == (delta <= 0)


def test_chunks_use_the_room_they_have() -> None:
    encoded = encode_frame(Sync("d", sync_step2(b"u" * 5000)))
    parts = split_frame(encoded, message_id=1, max_message_size=300)
    assert all(len(part) >= 290 for part in parts[:-1])


def test_a_real_large_document_state_goes_through_default_sized_chunks() -> None:
    doc = real_doc("".join(chr(97 + i % 26) for i in range(150_000)))
    encoded = encode_frame(Sync("big", sync_step2(doc.get_update())))
    parts = split_and_reassemble(encoded, DEFAULT_MAX_MESSAGE_SIZE)
    assert len(parts) >= 3


def test_split_refuses_a_message_size_too_small_for_any_data() -> None:
    with pytest.raises(LocalProtocolError, match="leaves no room"):
        split_frame(b"x" * 100, message_id=0, max_message_size=9)


# -- reassembly errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "match"),
    [
        ([Chunk(1, 1, 3, b"a")], "no frame in progress"),
        ([Chunk(1, 0, 3, b"a"), Chunk(2, 0, 3, b"b")], "starts a new frame while message 1"),
        ([Chunk(1, 0, 3, b"a"), Chunk(2, 1, 3, b"b")], "while message 1 is in progress"),
        ([Chunk(1, 0, 3, b"a"), Chunk(1, 1, 4, b"b")], "started with count 3"),
        ([Chunk(1, 0, 3, b"a"), Chunk(1, 2, 3, b"b")], "expected index 1"),
        ([Chunk(1, 0, 3, b"a"), Chunk(1, 1, 3, b"b"), Chunk(1, 1, 3, b"b")], "expected index 2"),
    ],
)
def test_reassembler_refuses_out_of_order_chunks(chunks: list[Chunk], match: str) -> None:
    reassembler = Reassembler()
    *accepted, refused = chunks
    for chunk in accepted:
        assert reassembler.feed(chunk) is None
    assert reassembler.buffered == len(accepted)
    with pytest.raises(ProtocolError, match=match):
        reassembler.feed(refused)
    assert reassembler.buffered == 0  # the partial frame is dropped


def test_reassembler_caps_the_total_and_reports_buffered_bytes() -> None:
    reassembler = Reassembler(max_frame_size=10)
    assert reassembler.feed(Chunk(1, 0, 3, b"abcd")) is None
    assert reassembler.buffered == 4
    assert reassembler.feed(Chunk(1, 1, 3, b"efgh")) is None
    assert reassembler.buffered == 8
    with pytest.raises(ProtocolError, match="reaches 12 bytes, above the limit of 10") as info:
        reassembler.feed(Chunk(1, 2, 3, b"ijkl"))
    assert info.value.close_code == CloseCode.TOO_BIG
    # A fresh frame may start after the error, and completes.
    assert reassembler.feed(Chunk(2, 0, 2, b"ab")) is None
    assert reassembler.feed(Chunk(2, 1, 2, b"cd")) == b"abcd"


def test_reassembler_refuses_a_count_its_limit_cannot_hold() -> None:
    with pytest.raises(ProtocolError, match=r"count must be in 2\.\.10"):
        Reassembler(max_frame_size=10).feed(Chunk(1, 0, 11, b"a"))


# -- rejections -------------------------------------------------------------------------------


@given(frames)
def test_every_proper_prefix_of_a_frame_is_refused(frame: Frame) -> None:
    encoded = encode_frame(frame)
    for end in range(len(encoded)):
        with pytest.raises(ProtocolError):
            decode_frame(encoded[:end])


GOOD_SYNC = sync_step1(b"\x00")
BAD_FRAMES: list[tuple[Frame, bytes, str]] = [
    (Hello(""), packed(0, "", {"v": 2, "id": "", "caps": []}), "HELLO peer id is empty"),
    (Hello("p" * 129), packed(0, "", {"v": 2, "id": "p" * 129, "caps": []}), "129 chars"),
    (Hello("a", version=1), packed(0, "", {"v": 1, "id": "a", "caps": []}), "version 1 .* 2"),
    (Hello("a", version=True), packed(0, "", {"v": True, "id": "a", "caps": []}), "got bool"),
    (
        Hello("a", capabilities=frozenset(str(i) for i in range(65))),
        packed(0, "", {"v": 2, "id": "a", "caps": [str(i) for i in range(65)]}),
        "65 capabilities exceed the limit of 64",
    ),
    (Sync("d" * 257, GOOD_SYNC), packed(1, "d" * 257, GOOD_SYNC), "257 chars"),
    (Sync("d", b"\x00\x02\x05ab"), packed(1, "d", b"\x00\x02\x05ab"), "payload length 5"),
    (Sync("d", b"\x01\x00"), packed(1, "d", b"\x01\x00"), "message type 1, expected 0"),
    (Awareness("d", b"\x01\x01\x05"), packed(2, "d", b"\x01\x01\x05"), "truncated"),
    (Ping(-1), packed(3, "", -1), r"PING nonce must be in 0\.\.2\*\*64-1 \(got -1\)"),
    (Pong(False), packed(4, "", False), "PONG nonce must be an int"),
    (Chunk(1, 2, 2, b"a"), packed(5, "", [1, 2, 2, b"a"]), "index 2 is not below its count 2"),
    (Chunk(1, 0, 1, b"a"), packed(5, "", [1, 0, 1, b"a"]), "count 1 is below 2"),
    (Chunk(1, 0, 2, b""), packed(5, "", [1, 0, 2, b""]), "carries no data"),
    (Chunk(-1, 0, 2, b"a"), packed(5, "", [-1, 0, 2, b"a"]), "message_id must be in"),
    (Bye(-5, "x"), packed(6, "", [-5, "x"]), "BYE code must be in"),
    (Bye(1000, b"x"), packed(6, "", [1000, b"x"]), "BYE reason must be a str"),  # type: ignore[arg-type]
    (Links(frozenset({""})), packed(7, "", [""]), "LINKS peer id is empty"),
    (
        Relay("d", GOOD_SYNC, frozenset({"a"})),
        packed(9, "d", [GOOD_SYNC, ["a"]]),
        "RELAY frame for doc 'd' carries a STEP1",
    ),
    (
        Relay("d", sync_update(b"\x00\x00"), frozenset()),
        packed(9, "d", [sync_update(b"\x00\x00"), []]),
        "RELAY sources are empty",
    ),
    (
        Relay("d", sync_update(b"\x00\x00"), frozenset({""})),
        packed(9, "d", [sync_update(b"\x00\x00"), [""]]),
        "RELAY source is empty",
    ),
    (Resync(7), packed(10, 7, None), "RESYNC doc_id must be a str"),  # type: ignore[arg-type]
    (
        Links(frozenset(str(i) for i in range(MAX_LINK_IDS + 1))),
        packed(7, "", [str(i) for i in range(MAX_LINK_IDS + 1)]),
        "1025",
    ),
]


@pytest.mark.parametrize(("frame", "wire", "match"), BAD_FRAMES)
def test_bad_frames_are_refused_both_ways(frame: Frame, wire: bytes, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        encode_frame(frame)
    with pytest.raises(ProtocolError) as info:
        decode_frame(wire)
    assert type(info.value) is ProtocolError  # the peer's fault, not ours
    if "1025" not in match:  # msgpack's own array limit catches this one first
        assert info.match(match)


def test_unsupported_version_names_both_and_closes_with_1003() -> None:
    with pytest.raises(ProtocolError, match="HELLO version 3 is not supported") as info:
        decode_frame(packed(0, "", {"v": 3, "id": "a", "caps": [], "future": 1}))
    assert "version 2" in str(info.value)
    assert info.value.close_code == CloseCode.UNSUPPORTED_VERSION


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"", "not one msgpack value"),
        (b"\xc1", "not one msgpack value"),
        (packed(3, "", 1) + b"\x00", "not one msgpack value"),
        (msgpack.packb({"kind": 3}), "must be an array of 3 \\(got map\\)"),
        (packed(3, ""), "must be an array of 3 \\(got an array of 2\\)"),
        (packed(11, "", 0), "unknown frame kind 11"),
        (packed(8, "doc", 0), "ABSENT body must be nil"),
        (packed(True, "", 0), "frame kind must be an int \\(got bool\\)"),
        (packed(3, "doc", 1), "PING frame carries doc_id 'doc'"),
        (packed(1, 5, GOOD_SYNC), "SYNC doc_id must be a str"),
        (packed(1, "d", "text"), "SYNC message must be bytes \\(got str\\)"),
        (packed(3, "", 1.0), "nonce must be an int \\(got float\\)"),
        (packed(0, "", ["a"]), "HELLO body must be a map"),
        (packed(0, "", {"id": "a", "caps": []}), "lacks the version"),
        (packed(0, "", {"v": 2, "id": "a", "caps": [], "x": 0}), "has keys"),
        (packed(0, "", {"v": 2, "id": "a", "caps": ["x", "x"]}), "more than once"),
        (packed(0, "", {"v": 2, "id": "a", "caps": "x"}), "must be an array"),
        (packed(5, "", [1, 0, 2]), "must be an array of 4"),
        (packed(7, "", ["a", "a"]), "more than once"),
        (packed(7, "", [1]), "must be a str"),
        (packed(9, "d", GOOD_SYNC), "RELAY body \\[message, sources\\] must be an array of 2"),
        (packed(9, "d", [sync_update(b"\x00\x00"), "a"]), "RELAY sources must be an array"),
        (packed(9, "d", [sync_update(b"\x00\x00"), ["a", "a"]]), "more than once"),
        (packed(9, "d", ["text", ["a"]]), "RELAY message must be bytes"),
        (packed(10, "d", b""), "RESYNC body must be nil"),
        (packed(10, 3, None), "RESYNC doc_id must be a str"),
        (b"\x93\x03\xa0\xd4\x01\x00", "not one msgpack value"),  # ext type
        (b"\x93\x07\xa0\x91\xa1\xff", "not one msgpack value"),  # invalid UTF-8
        (b"\x93\x03\xa0" + b"\x91" * 100_000 + b"\x00", "not one msgpack value"),  # nesting
        (b"\x93\x07\xa0\xdd\xff\xff\xff\xff", "not one msgpack value"),  # huge array header
        (b"\x93\x01\xa0\xc6\xff\xff\xff\xff", "not one msgpack value"),  # huge bin header
    ],
)
def test_malformed_frames_are_refused(wire: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_frame(wire)


def test_oversized_frames_are_refused_with_1009() -> None:
    encoded = encode_frame(Bye(1000, "x" * 100))
    with pytest.raises(ProtocolError, match=f"{len(encoded)} bytes, above the limit of 50") as info:
        decode_frame(encoded, max_frame_size=50)
    assert info.value.close_code == CloseCode.TOO_BIG
    with pytest.raises(LocalProtocolError, match="above the limit of 50"):
        encode_frame(Bye(1000, "x" * 100), max_frame_size=50)


def test_chunk_count_is_bounded_by_the_frame_limit() -> None:
    wire = packed(5, "", [1, 0, 101, b"a"])
    assert decode_frame(wire, max_frame_size=200) == Chunk(1, 0, 101, b"a")
    with pytest.raises(ProtocolError, match="count 101 exceeds the 100 chunks"):
        decode_frame(wire, max_frame_size=100)


def test_encode_refuses_what_is_not_a_frame() -> None:
    with pytest.raises(LocalProtocolError, match="not a frame"):
        encode_frame("hello")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="frozenset"):
        encode_frame(Links({"a"}))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="cannot encode"):
        encode_frame(Bye(1000, "\ud800"))


def test_decode_refuses_text_instead_of_bytes() -> None:
    with pytest.raises(ProtocolError, match="must be bytes"):
        decode_frame("[3, '', 1]")  # type: ignore[arg-type]


# -- fuzzing ----------------------------------------------------------------------------------


def decode_or_protocol_error(data: bytes) -> None:
    try:
        frame = decode_frame(data, max_frame_size=4096)
    except ProtocolError:
        return
    assert decode_frame(encode_frame(frame)) == frame


@settings(max_examples=2000)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_error(data: bytes) -> None:
    decode_or_protocol_error(data)


@settings(max_examples=2000)
@given(frames, st.data())
def test_mutated_frames_raise_only_protocol_error(frame: Frame, data: st.DataObject) -> None:
    encoded = bytearray(encode_frame(frame))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(encoded)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "insert":
            encoded[at:at] = data.draw(st.binary(min_size=1, max_size=3))
        elif at < len(encoded):
            if action == "flip":
                encoded[at] = data.draw(st.integers(0, 255))
            else:
                del encoded[at]
    decode_or_protocol_error(bytes(encoded))


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=500)
@given(st.sampled_from(FrameKind) | st.integers(-2, 10), st.text(max_size=5), msgpack_values)
def test_well_formed_msgpack_of_any_shape_raises_only_protocol_error(
    kind: int, doc_id: str, body: object
) -> None:
    decode_or_protocol_error(packed(kind, doc_id, body))


# -- batches: several frames in one transport message -----------------------------------------


def test_a_batch_decodes_to_its_frames_in_order() -> None:
    frames = [Ping(1), Sync("doc", sync_step1(b"\x00")), Absent("other"), Pong(2)]
    messages = batch_messages([encode_frame(frame) for frame in frames], 64)
    assert len(messages) == 1
    assert decode_frames(messages[0]) == frames


def test_batches_never_exceed_the_message_size() -> None:
    encoded = [encode_frame(Ping(index)) for index in range(100)]
    messages = batch_messages(encoded, 20)
    assert all(len(message) <= 20 for message in messages)
    assert [frame for message in messages for frame in decode_frames(message)] == [
        Ping(index) for index in range(100)
    ]


def test_a_batch_cut_inside_a_frame_is_refused() -> None:
    whole = encode_frame(Ping(1)) + encode_frame(Sync("doc", sync_step1(b"\x00")))
    with pytest.raises(ProtocolError, match="ends inside a frame"):
        decode_frames(whole[:-2])
