"""A bad peer sends each kind of bad input; the good peers close that link and carry on.

Mallory speaks through a real connector (the simulated network, or WebRTC through a real
signaling server) but with no mesh behind it: when a good peer links to it, it says HELLO
and then one kind of bad input. Each kind must close that link with a logged reason, leave
the good peers' documents as they were, and keep them linked to each other and converging.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pycrdt

from crdtsync import Peer
from crdtsync.protocol.frames import Chunk, Hello, Ping, Sync, encode_frame
from crdtsync.protocol.link import LinkSettings
from crdtsync.protocol.ymessages import sync_step2, sync_update
from crdtsync.signaling.identity import Identity
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing import SimNetwork, doc_version, wait_converged
from crdtsync.testing.virtual_clock import run
from crdtsync.transport.base import Connector, Link
from crdtsync.transport.webrtc import WebRTCConnector

TIMEOUT = 30.0
LOOPBACK = ("127.0.0.1",)
ROOM = "notes"
SETTINGS = LinkSettings(max_frame_size=1 << 20, message_burst=100, max_messages_per_second=50)


def a_real_update() -> bytes:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.get("text", type=pycrdt.Text).insert(0, "a perfectly good sentence, cut in half")
    return doc.get_update()


REAL = a_real_update()
# Each kind of bad input, and what the good side's log says when it closes the link.
ATTACKS: dict[str, tuple[list[bytes], str]] = {
    "malformed frame": ([b"\xc1 not msgpack"], "frame"),
    "non-Yjs update": (
        [encode_frame(Sync("default", sync_step2(b"\xff\xfe\xfd")))],
        "malformed remote step 2",
    ),
    "update pycrdt rejects": (
        [encode_frame(Sync("default", sync_update(REAL[: len(REAL) // 2])))],
        "rejected",
    ),
    "endless chunks": (
        [
            encode_frame(Chunk(message_id=7, index=index, count=1000, data=b"x" * 60_000))
            for index in range(40)
        ],
        "above the limit",
    ),
    "flood": ([encode_frame(Ping(nonce)) for nonce in range(1, 400)], "flood"),
}


class Mallory:
    """A peer with no mesh: it answers a link with HELLO, then with bad input."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.opened: asyncio.Queue[Link] = asyncio.Queue()
        self.lost: asyncio.Queue[str] = asyncio.Queue()

    def members_changed(self, members: frozenset[str]) -> None:
        pass

    def link_opened(self, link: Link) -> None:
        self.opened.put_nowait(link)

    def link_failed(self, remote_id: str, reason: str) -> None:
        pass

    def data_received(self, link: Link, data: bytes) -> None:
        pass

    def link_drained(self, link: Link) -> None:
        pass

    def link_lost(self, link: Link, reason: str) -> None:
        self.lost.put_nowait(link.remote_id)

    async def attack(self, messages: list[bytes]) -> None:
        """Wait for the next link, send HELLO and ``messages``, wait until it is closed."""
        async with asyncio.timeout(TIMEOUT):
            link = await self.opened.get()
            link.send(encode_frame(Hello(self.connector.local_id)))
            for message in messages:
                link.send(message)
            while await self.lost.get() != link.remote_id:
                pass


class Closes(logging.Handler):
    """The reasons good peers gave for closing links, as logged."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.reasons.append(record.getMessage())


async def bad_peer_scenario(
    start_good: Callable[[pycrdt.Doc[Any]], Awaitable[Peer]],
    mallory_connector: Callable[[list[Peer]], Connector],
) -> None:
    closes = Closes()
    logger = logging.getLogger("crdtsync.protocol.link")
    logger.addHandler(closes)
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc(), pycrdt.Doc()]
    try:
        async with AsyncExitStack() as stack:
            good = [await stack.enter_async_context(await start_good(doc)) for doc in docs]
            await good[0].wait_for_peers(1, timeout=TIMEOUT)
            docs[0].get("text", type=pycrdt.Text).insert(0, "before mallory")
            await wait_converged(docs, timeout=TIMEOUT)
            before = doc_version(docs[0])
            mallory = Mallory(mallory_connector(good))
            await mallory.connector.start(mallory)
            stack.push_async_callback(mallory.connector.aclose)
            for name, (messages, _) in ATTACKS.items():
                closes.reasons.append(f"-- {name}")
                await mallory.attack(messages)
            assert doc_version(docs[0]) == before == doc_version(docs[1])
            assert good[0].peers == {good[1].id}
            docs[1].get("text", type=pycrdt.Text).insert(0, "after mallory, ")
            await wait_converged(docs, timeout=TIMEOUT)
            assert str(docs[0].get("text", type=pycrdt.Text)) == "after mallory, before mallory"
    finally:
        logger.removeHandler(closes)
    log = "\n".join(closes.reasons)
    for name, (_, reason) in ATTACKS.items():
        section = log.split(f"-- {name}")[1].split("\n-- ")[0]
        assert reason in section, f"{name}: no close saying {reason!r} in\n{section}"


def test_a_bad_peer_on_the_simulated_network() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=11)

        async def start_good(doc: pycrdt.Doc[Any]) -> Peer:
            return Peer(doc, room=ROOM, network=network, link_settings=SETTINGS)

        # Ids are handed out in order: mallory's is the largest, so the good peers dial it.
        await bad_peer_scenario(start_good, lambda _good: network.connector(ROOM))

    run(scenario())


async def test_a_bad_peer_over_webrtc() -> None:
    async with SignalingServer() as server:

        async def start_good(doc: pycrdt.Doc[Any]) -> Peer:
            return Peer(
                doc,
                room=ROOM,
                signaling=server.url,
                host_addresses=LOOPBACK,
                link_settings=SETTINGS,
            )

        def mallory_connector(good: list[Peer]) -> Connector:
            identity = Identity()
            while identity.peer_id < max(peer.id for peer in good):
                identity = Identity()  # the larger id: the good peers dial it
            return WebRTCConnector(server.url, ROOM, identity=identity, host_addresses=LOOPBACK)

        await bad_peer_scenario(start_good, mallory_connector)
