"""Fuzzing the decoders and the link core: garbage may only raise our documented errors,
and a replica fed garbage stays as it was. CI runs 10,000 inputs per target."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import msgpack
import pycrdt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdtsync.errors import ProtocolError
from crdtsync.protocol.frames import (
    FrameKind,
    Hello,
    Sync,
    decode_frame,
    decode_frames,
    encode_frame,
)
from crdtsync.protocol.link import LinkProtocol, LinkState
from crdtsync.protocol.signaling import decode_signaling
from crdtsync.protocol.ymessages import sync_step1, sync_step2, sync_update
from crdtsync.replica import Replica
from crdtsync.testing import doc_version

EXAMPLES = 10_000 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 300
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Payload prefixes: one claims ~2^28 client groups (refused before pycrdt sees it); the
# other is one group of structs of client 7 starting at clock 5, which pycrdt decodes but
# can never integrate (clocks 0-4 never come), so whatever follows leaves the doc alone.
TOO_MANY_GROUPS = b"\xff\xff\xff\x7f"
UNREACHABLE_STRUCTS = b"\x01\x01\x07\x05"


@FUZZ
@given(st.binary(max_size=300))
def test_the_frame_decoders_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_frame(data, max_frame_size=1 << 16)
    with contextlib.suppress(ProtocolError):  # a batch: frames back to back
        decode_frames(data + data, max_frame_size=1 << 16)


@FUZZ
@given(st.binary(max_size=300))
def test_the_signaling_decoder_raises_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_signaling(data, max_size=1 << 16)


def sync_garbage() -> st.SearchStrategy[bytes]:
    """SYNC frames whose y-protocols message is broken, at every depth."""
    payload = st.builds(
        lambda prefix, tail: prefix + tail,
        st.sampled_from([TOO_MANY_GROUPS, UNREACHABLE_STRUCTS]),
        st.binary(max_size=60),
    )
    message = st.one_of(
        payload.map(sync_step2),
        payload.map(sync_update),
        st.binary(max_size=40).map(sync_step1),
    )
    not_y_protocols = st.binary(max_size=40).map(  # packed by hand: encode_frame refuses it
        lambda body: msgpack.packb([FrameKind.SYNC, "default", body], use_bin_type=True)
    )
    return st.one_of(message.map(lambda body: encode_frame(Sync("default", body))), not_y_protocols)


def a_document() -> pycrdt.Doc[Any]:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.get("text", type=pycrdt.Text).insert(0, "untouchable")
    return doc


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=80), sync_garbage()), min_size=1, max_size=8))
def test_the_link_core_closes_on_garbage_and_leaves_the_document(messages: list[bytes]) -> None:
    doc = a_document()
    before = doc_version(doc)
    link = LinkProtocol("local", {"default": Replica(doc)}, expected_peer="mallory")
    link.start(0.0)
    link.receive_data(encode_frame(Hello("mallory")), 0.0)
    for index, message in enumerate(messages):
        link.receive_data(message, 0.001 * index)  # never raises
        link.data_to_send()
        link.events_received()
    assert doc_version(doc) == before
    if link.state is not LinkState.CLOSED:  # what it accepted was harmless (a step 1, a ping)
        assert link.state is LinkState.OPEN
