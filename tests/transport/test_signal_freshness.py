"""Password rooms against a signaling path that replays and forges, on 127.0.0.1.

A relay in front of the real server stands for a malicious server (or anyone on its wire):
it forwards what the server sends each peer, but may repeat a link-setup payload or change
who it says sent it. Offers carry an id and a time, answers echo the offer's id, and sealed
payloads are signed by their sender's identity (``room_key.py``), so a replayed payload is
acted on once and a password holder cannot speak as another member.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

import msgpack
import pycrdt
import pytest
from relaying import CHUNK, TcpRelay, real_offer

from crdtsync import Peer
from crdtsync.errors import ProtocolError
from crdtsync.protocol.signaling import Signal, decode_signaling, encode_signaling
from crdtsync.signaling.client import SignalingClient
from crdtsync.signaling.identity import Identity
from crdtsync.signaling.room_key import RoomKey
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing import wait_converged

TIMEOUT = 30.0
LOOPBACK = ("127.0.0.1",)
ROOM = "secret"
PASSWORD = "correct horse"
REPLAYS = 100  # as the review: one captured sealed offer, sent 100 times

Tamper = Callable[[Signal], list[Signal]]


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class TamperingRelay(TcpRelay):
    """A TCP relay to the server that lets ``tamper`` rewrite each signal the server sends
    (server frames are unmasked binary WebSocket frames, one message each)."""

    def __init__(self, target_port: int, tamper: Tamper) -> None:
        super().__init__(target_port)
        self.tamper = tamper

    async def _from_server(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        upgraded = False
        while data := await source.read(CHUNK):
            buffer += data
            if not upgraded:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    continue
                sink.write(bytes(buffer[: end + 4]))
                del buffer[: end + 4]
                upgraded = True
            while (frame := _split_frame(buffer)) is not None:
                opcode, payload, raw = frame
                if opcode != 0x2:
                    sink.write(raw)
                    continue
                try:
                    message = decode_signaling(payload, max_size=1 << 20)
                except ProtocolError:
                    message = None
                if not isinstance(message, Signal):
                    sink.write(raw)
                    continue
                for out in self.tamper(message):
                    sink.write(_frame(encode_signaling(out)))
            await sink.drain()
        sink.close()


def _split_frame(buffer: bytearray) -> tuple[int, bytes, bytes] | None:
    """The first whole frame in ``buffer`` (removed): (opcode, payload, raw bytes)."""
    if len(buffer) < 2:
        return None
    length, offset = buffer[1] & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        length, offset = int.from_bytes(buffer[2:4], "big"), 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        length, offset = int.from_bytes(buffer[2:10], "big"), 10
    if len(buffer) < offset + length:
        return None
    raw = bytes(buffer[: offset + length])
    del buffer[: offset + length]
    return raw[0] & 0x0F, raw[offset:], raw


def _frame(payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = bytes([0x82, size])
    elif size < 1 << 16:
        header = bytes([0x82, 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x82, 127]) + size.to_bytes(8, "big")
    return header + payload


class Refused(logging.Handler):
    """What each peer refused, as logged by the connector."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "refused" in str(record.msg):
            self.messages.append(record.getMessage())
            self.changed.set()

    def count(self, text: str) -> int:
        return sum(text in message for message in self.messages)

    async def wait_count(self, text: str, count: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            while self.count(text) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def refused() -> object:
    handler = Refused()
    logger = logging.getLogger("crdtsync.transport.webrtc")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.setLevel(previous)
    logger.removeHandler(handler)


def ordered_identities() -> tuple[Identity, Identity]:
    """Two identities, the first with the smaller id: it dials (the mesh's rule)."""
    first, second = Identity(), Identity()
    return (first, second) if first.peer_id < second.peer_id else (second, first)


async def test_a_replayed_offer_and_answer_are_acted_on_once(refused: Refused) -> None:
    """L3: the path repeats Alice's sealed offer to Bob, and Bob's answer to Alice, 100
    times each. Bob answers once, Alice takes one answer: one link, 99 + 99 refusals."""
    alice_identity, bob_identity = ordered_identities()

    def repeat(signal: Signal) -> list[Signal]:
        return [signal] * REPLAYS if signal.room == ROOM else [signal]

    async with (
        SignalingServer() as server,
        TamperingRelay(port_of(server.url), repeat) as to_alice,
        TamperingRelay(port_of(server.url), repeat) as to_bob,
        AsyncExitStack() as stack,
    ):
        docs: list[pycrdt.Doc[object]] = [pycrdt.Doc(), pycrdt.Doc()]
        alice, bob = [
            await stack.enter_async_context(
                Peer(
                    doc,
                    room=ROOM,
                    signaling=relay.url,
                    host_addresses=LOOPBACK,
                    password=PASSWORD,
                    identity=identity,
                )
            )
            for doc, relay, identity in zip(
                docs, (to_alice, to_bob), (alice_identity, bob_identity), strict=True
            )
        ]
        await alice.wait_for_peers(1, timeout=TIMEOUT)
        await bob.wait_for_peers(1, timeout=TIMEOUT)
        docs[0]["text"] = pycrdt.Text("once")
        await wait_converged(docs, timeout=TIMEOUT)
        seen_before = f"refused a signal from {alice.id}: offer id seen before"
        no_such_offer = f"refused an answer from {bob.id}: no such offer"
        await refused.wait_count(seen_before, REPLAYS - 1)
        await refused.wait_count(no_such_offer, REPLAYS - 1)
        assert alice.peers == {bob.id}
        assert bob.peers == {alice.id}
    # Exactly: Bob answered one offer (else Alice would refuse 100 copies of each answer).
    assert refused.count(seen_before) == REPLAYS - 1
    assert refused.count(no_such_offer) == REPLAYS - 1


async def test_a_password_holder_cannot_speak_as_another_member(refused: Refused) -> None:
    """L3: Mallory knows the password. The path relays her offer to Bob as Alice's: Bob
    refuses it (her key is not Alice's); sent as her own, the same offer is answered."""
    alice = Identity()  # a member Mallory would pass for; she need not even be online
    mallory = Identity()
    answers: asyncio.Queue[str] = asyncio.Queue()

    class Listener:
        def members_changed(self, room: str, members: frozenset[str]) -> None:
            pass

        def signal_received(self, room: str, peer_id: str, data: bytes) -> None:
            message = msgpack.unpackb(key.open(data, sender=peer_id, recipient=mallory.peer_id))
            if message["type"] == "answer":
                answers.put_nowait(peer_id)

    def as_alice(signal: Signal) -> list[Signal]:
        if signal.peer_id == mallory.peer_id and signal.room == ROOM and impersonate:
            return [Signal(signal.room, alice.peer_id, signal.data)]
        return [signal]

    impersonate = True
    key = await asyncio.to_thread(RoomKey.derive, PASSWORD, ROOM)
    sdp = await real_offer()
    async with (
        SignalingServer() as server,
        TamperingRelay(port_of(server.url), as_alice) as to_bob,
        AsyncExitStack() as stack,
    ):
        bob = await stack.enter_async_context(
            Peer(
                pycrdt.Doc(),
                room=ROOM,
                signaling=to_bob.url,
                host_addresses=LOOPBACK,
                password=PASSWORD,
            )
        )
        client = SignalingClient(server.url, Listener(), rooms={ROOM: None}, identity=mallory)
        await client.start()
        stack.push_async_callback(client.aclose)
        await client.wait_joined(ROOM, TIMEOUT)

        async def offer(sender: Identity) -> None:
            message = {
                "type": "offer",
                "time": time.time(),
                "sdp": sdp,
                "dial": 1,
                "offer": os.urandom(16),
            }
            sealed = key.seal(msgpack.packb(message), sender=sender, recipient=bob.id)
            assert await client.send_signal(ROOM, bob.id, sealed)

        forger = Identity()
        forger.peer_id = alice.peer_id  # her own key, Alice's id in the sealed context
        for sender in (mallory, forger):
            await offer(sender)
        await refused.wait_count("is signed by another peer", 2)
        impersonate = False
        await offer(mallory)  # the control: as herself, Mallory is a member like any other
        async with asyncio.timeout(TIMEOUT):
            while await answers.get() != bob.id:
                pass
    assert refused.count(f"refused a signal from {alice.peer_id}: payload from") == 2
    assert refused.count("is signed by another peer") == 2
