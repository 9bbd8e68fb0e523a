"""Counting data-channel sends: every message and its bytes, only while counting."""

from __future__ import annotations

from aiortc import RTCDataChannel

from crdtsync.bench.rooms import raw_mesh
from crdtsync.bench.wire import counting_sends


async def test_every_message_sent_while_counting_is_counted_with_its_bytes() -> None:
    original = RTCDataChannel.send
    async with raw_mesh(2, timeout=10.0) as mesh:
        with counting_sends() as count:
            mesh.channels[0][1].send(b"abc")
            mesh.channels[1][0].send("déjà")  # text: its UTF-8 bytes
        mesh.channels[0][1].send(b"not counted")
    assert (count.messages, count.bytes) == (2, 3 + 6)
    assert RTCDataChannel.send is original
