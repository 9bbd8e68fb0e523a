"""Failover between signaling servers that do not share rooms, on 127.0.0.1.

A room's peers all on server A; A stops; they all move to B and meet again there, while
their WebRTC links stay up (the same peer connections, none new) and edits flow with no
server at all. Also: a first URL that nothing listens on, a drain's close 1001 followed at
once, both dialects, the ``crdtsync peer`` command. The cross-server cases (servers that
share rooms) are the backplane's tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pycrdt
import pytest
from aiortc import RTCPeerConnection
from test_client import Listener

from crdtsync import Peer
from crdtsync.errors import ConfigError
from crdtsync.peer import Dialect
from crdtsync.signaling.client import SignalingClient
from crdtsync.signaling.server import SignalingServer
from crdtsync.signaling.ywebrtc_client import YWebrtcSignalingClient
from crdtsync.testing import wait_converged

TIMEOUT = 20.0
LOOPBACK = ("127.0.0.1",)


@contextlib.asynccontextmanager
async def dead_url() -> AsyncIterator[str]:
    """The URL of a server that was on a port and is gone: nothing listens there now."""
    server = SignalingServer(port=0)
    await server.start()
    url = server.url
    await server.aclose()
    yield url


def peer_connections_up() -> set[RTCPeerConnection]:
    """Every peer connection of this process that is connected now (``type``, not
    ``isinstance``: the heap holds dead weak proxies too)."""
    return {
        obj
        for obj in gc.get_objects()
        if type(obj) is RTCPeerConnection and obj.connectionState == "connected"
    }


async def until_delivered(
    client: SignalingClient | YWebrtcSignalingClient,
    send: Callable[[], Awaitable[bool]],
    inbox: asyncio.Queue[Any],
    expected: object,
) -> None:
    """Send until ``inbox`` gets ``expected``: the receiver may still be on its way to the
    server, and so may ``client`` (a send while disconnected returns False)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            if not await send():
                await client.wait_connected(timeout=TIMEOUT)
                continue
            try:
                async with asyncio.timeout(0.2):
                    while await inbox.get() != expected:
                        pass  # an earlier one, delivered late
                    return
            except TimeoutError:
                continue  # the receiver was not subscribed yet: say it again


def text_of(doc: pycrdt.Doc[Any]) -> pycrdt.Text:
    return doc.get("text", type=pycrdt.Text)


# -- the clients --------------------------------------------------------------------------------


async def test_the_native_client_skips_an_unreachable_server_and_follows_a_drain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with dead_url() as dead, SignalingServer(port=0) as b:
        a = SignalingServer(port=0)
        await a.start()
        a_url = a.url
        alice_hears, bob_hears = Listener(), Listener()
        alice = SignalingClient([dead, a.url, b.url], alice_hears, rooms={"notes": None})
        bob = SignalingClient([a.url, b.url], bob_hears, rooms={"notes": None})
        try:
            for client in (alice, bob):
                await client.start()
                await client.wait_joined("notes", TIMEOUT)
            assert a.router.rooms["notes"] == {alice.peer_id, bob.peer_id}
            with caplog.at_level(logging.INFO, logger="crdtsync.signaling"):
                await a.aclose()  # drains: each client is closed with 1001, and moves on
                await until_delivered(
                    alice,
                    lambda: alice.send_signal("notes", bob.peer_id, b"offer"),
                    bob_hears.signals,
                    ("notes", alice.peer_id, b"offer"),
                )
            assert b.router.rooms["notes"] == {alice.peer_id, bob.peer_id}  # the same ids
            for client in (alice, bob):
                assert (
                    f"! {client.peer_id} lost {a_url} (closed 1001 (going away): server "
                    f"shutting down); dialing {b.url} at once"
                ) in caplog.messages
        finally:
            await alice.aclose()
            await bob.aclose()
            await a.aclose()


async def test_the_ywebrtc_client_skips_an_unreachable_server_and_follows_a_drain() -> None:
    async with dead_url() as dead, SignalingServer(port=0) as b:
        a = SignalingServer(port=0)
        await a.start()
        inbox: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

        class Inbox:
            def signaling_connected(self) -> None:
                pass

            def publish_received(self, topic: str, data: object) -> None:
                inbox.put_nowait((topic, data))

        sender = YWebrtcSignalingClient([dead, a.url, b.url], Inbox(), topics=("room",))
        receiver = YWebrtcSignalingClient([a.url, b.url], Inbox(), topics=("room",))
        try:
            for client in (sender, receiver):
                await client.start()
                await client.wait_connected(timeout=TIMEOUT)
            assert sender.url == a.url
            on_a, on_b = ("room", "on a"), ("room", "on b")
            await until_delivered(sender, lambda: sender.publish(*on_a), inbox, on_a)
            await a.aclose()
            await until_delivered(sender, lambda: sender.publish(*on_b), inbox, on_b)
            assert (sender.url, receiver.url) == (b.url, b.url)
        finally:
            await sender.aclose()
            await receiver.aclose()
            await a.aclose()


def test_bad_server_lists_are_config_errors_naming_the_value() -> None:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    for signaling, message in (
        ([], "no signaling server"),
        (["ws://127.0.0.1:1", "http://127.0.0.1:2"], "'http://127.0.0.1:2' must start with ws://"),
        (["ws://127.0.0.1:1", "ws://127.0.0.1:1/"], "'ws://127.0.0.1:1/' is given twice"),
    ):
        for dialect in ("crdtsync", "y-webrtc"):
            with pytest.raises(ConfigError, match=message):
                Peer(doc, room="notes", signaling=signaling, dialect=dialect)  # type: ignore[arg-type]


# -- peers: links stay up while the room moves ---------------------------------------------------


@pytest.mark.parametrize("dialect", ["crdtsync", "y-webrtc"])
async def test_a_room_moves_to_the_next_server_and_its_links_stay_up(dialect: Dialect) -> None:
    """Three peers on A; A stops while B is not up yet: links stay, edits flow with no
    server; B comes up: all move there, a newcomer (whose first URL is dead) meets them."""
    b = SignalingServer(port=0)
    await b.start()
    b_url = b.url
    b_port = int(b_url.rsplit(":", 1)[1])
    await b.aclose()  # B is down for now: the peers' second URL is unreachable
    a = SignalingServer(port=0)
    await a.start()
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(4)]
    peers = [
        Peer(doc, room="notes", signaling=[a.url, b_url], host_addresses=LOOPBACK, dialect=dialect)
        for doc in docs[:3]
    ]
    b = SignalingServer(port=b_port)
    newcomer: Peer | None = None
    watchers: list[asyncio.Task[None]] = []
    try:
        for peer in peers:
            await peer.start()
        for peer in peers:
            await peer.wait_for_peers(2, timeout=TIMEOUT)
        before = peer_connections_up()
        assert len(before) == 6  # one per side of each of the three pairs
        # Any link lost from here on would end a watcher.
        watchers = [
            asyncio.create_task(
                peer.wait_for(lambda p=peer: len(p.peers) < 2, timeout=3600, what="a lost link")
            )
            for peer in peers
        ]

        await a.aclose()  # 1001 to every peer; B refuses them too
        text_of(docs[0]).insert(0, "typed with no server up; ")
        await wait_converged(docs[:3], timeout=TIMEOUT)

        await b.start()
        async with dead_url() as dead:
            newcomer = Peer(
                docs[3],
                room="notes",
                signaling=[dead, b_url],
                host_addresses=LOOPBACK,
                dialect=dialect,
            )
            await newcomer.start()
        await newcomer.wait_for_peers(3, timeout=TIMEOUT)  # the others found it through B
        for peer in peers:
            await peer.wait_for_peers(3, timeout=TIMEOUT)
        await wait_converged(docs, timeout=TIMEOUT)  # the newcomer holds the text: edit it
        text_of(docs[3]).insert(0, "and on B; ")
        await wait_converged(docs, timeout=TIMEOUT)
        assert str(text_of(docs[1])) == "and on B; typed with no server up; "

        assert before <= peer_connections_up()  # the links of A's days, all still up
        assert not any(watcher.done() for watcher in watchers)
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for peer in [*peers, *([newcomer] if newcomer else [])]:
            await peer.aclose()
        await a.aclose()
        await b.aclose()


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM])
async def test_peers_move_on_when_their_server_process_stops(stop: signal.Signals) -> None:
    """A ``crdtsync signal`` process killed with SIGKILL (no close frame: a dropped
    connection) or stopped with SIGTERM (it closes each client with 1001); its peers dial B
    at once, where one who only knows B meets them."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "crdtsync.cli", "signal", "--port", "0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(3)]
    peers: list[Peer] = []
    b = SignalingServer(port=0)
    try:
        async with asyncio.timeout(TIMEOUT):
            a_url = (await process.stdout.readline()).decode().split()[3]  # "... on URL (...)"
        await b.start()
        peers = [
            Peer(doc, room="notes", signaling=[a_url, b.url], host_addresses=LOOPBACK)
            for doc in docs[:2]
        ]
        for peer in peers:
            await peer.start()
        await peers[0].wait_for_peers(1, timeout=TIMEOUT)
        before = peer_connections_up()
        process.send_signal(stop)
        await process.wait()
        text_of(docs[0]).insert(0, "after the stop")
        await wait_converged(docs[:2], timeout=TIMEOUT)
        peers.append(Peer(docs[2], room="notes", signaling=b.url, host_addresses=LOOPBACK))
        await peers[2].start()
        await peers[2].wait_for_peers(2, timeout=TIMEOUT)
        await wait_converged(docs, timeout=TIMEOUT)
        assert before <= peer_connections_up()
        assert peers[0].peers == {peers[1].id, peers[2].id}
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for peer in peers:
            await peer.aclose()
        await b.aclose()


# -- the command --------------------------------------------------------------------------------


async def test_crdtsync_peer_takes_several_signaling_urls() -> None:
    async with dead_url() as dead, SignalingServer(port=0) as server:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "crdtsync.cli", "peer", "--room", "notes"),
            *("--signaling", dead, "--signaling", server.url, "--host-address", "127.0.0.1"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            async with asyncio.timeout(TIMEOUT):
                ready = json.loads(await process.stdout.readline())
            assert server.router.rooms["notes"] == {ready["ready"]}
            process.stdin.write(b'{"quit": true}\n')
            await process.stdin.drain()
            async with asyncio.timeout(TIMEOUT):
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
