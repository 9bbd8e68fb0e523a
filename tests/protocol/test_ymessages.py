"""y-protocols bytes: identical to pycrdt's, parsed strictly, garbage refused with ProtocolError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt._sync import create_sync_step1_message, create_sync_step2_message

from crdtsync.errors import LocalProtocolError, ProtocolError
from crdtsync.protocol.ymessages import (
    MAX_VARUINT,
    MAX_VARUINT_BYTES,
    SyncType,
    awareness_message,
    parse_awareness_message,
    parse_sync_message,
    read_var_uint,
    sync_step1,
    sync_step2,
    sync_update,
    validate_awareness_update,
)

json_states = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8)), max_size=4),
)


def encode_awareness(entries: list[tuple[int, int, Any]]) -> bytes:
    """An awareness update written the way y-protocols' awareness.js writes it."""
    out = [pycrdt.write_var_uint(len(entries))]
    for client_id, clock, state in entries:
        text = json.dumps(state).encode()
        out += [pycrdt.write_var_uint(client_id), pycrdt.write_var_uint(clock)]
        out += [pycrdt.write_var_uint(len(text)), text]
    return b"".join(out)


awareness_updates = st.lists(
    st.tuples(st.integers(0, MAX_VARUINT), st.integers(0, 2**32), json_states), max_size=5
).map(encode_awareness)


def edited_doc(text: str) -> pycrdt.Doc:  # type: ignore[type-arg]
    doc: pycrdt.Doc = pycrdt.Doc()  # type: ignore[type-arg]
    doc["text"] = pycrdt.Text(text)
    return doc


# -- varuints ---------------------------------------------------------------------------------


@given(st.integers(0, MAX_VARUINT), st.binary(max_size=4), st.binary(max_size=4))
def test_read_var_uint_reads_what_pycrdt_writes(value: int, before: bytes, after: bytes) -> None:
    encoded = pycrdt.write_var_uint(value)
    assert len(encoded) <= MAX_VARUINT_BYTES
    data = before + encoded + after
    assert read_var_uint(data, len(before)) == (value, len(before) + len(encoded))


def test_read_var_uint_boundaries() -> None:
    assert read_var_uint(b"\x00", 0) == (0, 1)
    assert read_var_uint(b"\x7f", 0) == (127, 1)
    assert read_var_uint(b"\x80\x01", 0) == (128, 2)
    assert read_var_uint(pycrdt.write_var_uint(MAX_VARUINT), 0) == (MAX_VARUINT, 8)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "truncated after 0 bytes"),
        (b"\x80", "truncated after 1 bytes"),
        (b"\xff" * 7, "truncated after 7 bytes"),
        (b"\xff" * 8 + b"\x01", "longer than 8 bytes"),
        (b"\xff" * 8, "longer than 8 bytes"),
        (pycrdt.write_var_uint(MAX_VARUINT + 1), "exceeds 2\\*\\*53 - 1"),
    ],
)
def test_read_var_uint_rejects(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        read_var_uint(data, 0)


def test_read_var_uint_rejects_a_negative_offset_as_caller_misuse() -> None:
    with pytest.raises(LocalProtocolError, match="-1"):
        read_var_uint(b"\x00", -1)


# -- sync messages ----------------------------------------------------------------------------


def test_builders_match_pycrdt_byte_for_byte() -> None:
    doc = edited_doc("hello world")
    state, update = doc.get_state(), doc.get_update()
    assert sync_step1(state) == pycrdt.create_sync_message(doc) == create_sync_step1_message(state)
    assert sync_step2(update) == create_sync_step2_message(update)
    assert sync_update(update) == pycrdt.create_update_message(update)


def test_real_sync_exchange_round_trips_and_converges() -> None:
    alice, bob = edited_doc("alice wrote this"), pycrdt.Doc()  # type: ignore[var-annotated]
    kind, state = parse_sync_message(sync_step1(bob.get_state()))
    assert (kind, state) == (SyncType.STEP1, bob.get_state())
    kind, update = parse_sync_message(sync_step2(alice.get_update(state)))
    assert kind is SyncType.STEP2
    bob.apply_update(update)
    assert str(bob.get("text", type=pycrdt.Text)) == "alice wrote this"


@given(st.sampled_from(SyncType), st.binary(max_size=300))
def test_parse_sync_message_round_trips(kind: SyncType, payload: bytes) -> None:
    build = {SyncType.STEP1: sync_step1, SyncType.STEP2: sync_step2, SyncType.UPDATE: sync_update}
    message = build[kind](payload)
    assert message == pycrdt._sync.create_message(payload, kind)
    assert parse_sync_message(message) == (kind, payload)


@given(st.sampled_from(SyncType), st.binary(max_size=200))
def test_every_proper_prefix_of_a_sync_message_is_refused(kind: SyncType, payload: bytes) -> None:
    message = pycrdt._sync.create_message(payload, kind)
    for end in range(len(message)):
        with pytest.raises(ProtocolError):
            parse_sync_message(message[:end])


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (b"", "empty"),
        (b"\x01\x00\x00", "message type 1, expected 0"),
        (b"\x00\x03\x00", "unknown sync type 3"),
        (b"\x00\x80", "truncated"),
        (b"\x00\x02\xf4\x03abc", "declared payload length 500 exceeds the 3 bytes left"),
        (b"\x00\x02\x01ab", "1 trailing bytes after the 1-byte payload"),
        (b"\x00\x02" + b"\xff" * 9, "longer than 8 bytes"),
    ],
)
def test_parse_sync_message_rejects(message: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_sync_message(message)


def test_builders_refuse_non_bytes_as_caller_misuse() -> None:
    for build in (sync_step1, sync_step2, sync_update, awareness_message):
        with pytest.raises(LocalProtocolError, match="must be bytes"):
            build("text")  # type: ignore[arg-type]


# -- awareness --------------------------------------------------------------------------------


def test_awareness_from_a_real_pycrdt_awareness_is_byte_identical() -> None:
    doc: pycrdt.Doc = pycrdt.Doc()  # type: ignore[type-arg]
    awareness = pycrdt.Awareness(doc)
    awareness.set_local_state({"user": {"name": "Ada", "color": "#f00"}, "cursor": None})
    update = awareness.encode_awareness_update([doc.client_id])
    message = awareness_message(update)
    assert message == pycrdt.create_awareness_message(update)
    assert parse_awareness_message(message) == update
    other = pycrdt.Awareness(pycrdt.Doc())
    other.apply_awareness_update(parse_awareness_message(message), origin="remote")
    assert other.states[doc.client_id]["user"]["name"] == "Ada"


@given(awareness_updates)
def test_awareness_round_trips(update: bytes) -> None:
    validate_awareness_update(update)
    message = awareness_message(update)
    assert message == pycrdt.create_awareness_message(update)
    assert parse_awareness_message(message) == update


@given(awareness_updates.filter(len))
def test_every_proper_prefix_of_an_awareness_message_is_refused(update: bytes) -> None:
    message = pycrdt.create_awareness_message(update)
    for end in range(len(message)):
        with pytest.raises(ProtocolError):
            parse_awareness_message(message[:end])


def raw_entry(state: bytes, client_id: int = 7, clock: int = 1) -> bytes:
    head = pycrdt.write_var_uint(client_id) + pycrdt.write_var_uint(clock)
    return head + pycrdt.write_var_uint(len(state)) + state


@pytest.mark.parametrize(
    ("update", "match"),
    [
        (b"", "truncated"),
        (b"\x01" + raw_entry(b"[1, 2]"), "state of client 7 is a JSON list"),
        (b"\x01" + raw_entry(b'"hi"'), "JSON str, expected an object or null"),
        (b"\x01" + raw_entry(b"{nope"), "state of client 7 \\(entry 0\\) is not JSON"),
        (b"\x01" + raw_entry(b'{"x": NaN}'), "is not JSON"),
        (b"\x01" + raw_entry(b'{"\xff": 1}'), "is not JSON"),
        (b"\x01" + raw_entry(b"[" * 100_000 + b"]" * 100_000), "is not JSON"),
        (b"\x01\x07\x01\x09{}", "declares a 9-byte state but only 2 bytes are left"),
        (b"\x01" + raw_entry(b"{}") + b"\x00", "1 trailing bytes after 1 clients"),
        (b"\x02" + raw_entry(b"{}"), "truncated"),
        (pycrdt.write_var_uint(1025), "1025 clients exceed the limit of 1024"),
    ],
)
def test_validate_awareness_update_rejects(update: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        validate_awareness_update(update)


def test_awareness_client_limit_is_a_keyword() -> None:
    update = encode_awareness([(1, 1, None), (2, 1, {})])
    validate_awareness_update(update, max_clients=2)
    with pytest.raises(ProtocolError, match="2 clients exceed the limit of 1"):
        validate_awareness_update(update, max_clients=1)


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (b"", "empty"),
        (b"\x00\x01\x00", "message type 0, expected 1"),
        (b"\x01\x05\x00", "declared payload length 5 exceeds the 1 bytes left"),
        (b"\x01\x01\x00\x00", "1 trailing bytes"),
        (b"\x01\x01\x01", "truncated"),
    ],
)
def test_parse_awareness_message_rejects(message: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_awareness_message(message)


def test_awareness_message_refuses_a_bad_update_as_caller_misuse() -> None:
    with pytest.raises(LocalProtocolError, match="JSON list"):
        awareness_message(b"\x01" + raw_entry(b"[]"))


@settings(max_examples=1000)
@given(st.binary(max_size=64))
def test_garbage_raises_only_protocol_error(data: bytes) -> None:
    for parse in (parse_sync_message, parse_awareness_message, validate_awareness_update):
        with contextlib.suppress(ProtocolError):
            parse(data)
