"""Peer.events(): what a host hears, on the simulated network (virtual clock) and for real."""

from __future__ import annotations

import asyncio
from typing import Any

import pycrdt

from crdtsync import Peer, SignalingServer
from crdtsync.host_events import (
    CongestionChanged,
    ConnectionState,
    EventStream,
    HostEvent,
    PeerLinked,
    PeerUnlinked,
    PresenceChanged,
    SignalingConnected,
    SignalingLost,
    Synced,
)
from crdtsync.protocol.link import LinkSettings
from crdtsync.testing import SimNetwork, wait_converged
from crdtsync.testing.virtual_clock import run

TIMEOUT = 10.0


async def next_of(stream: EventStream, kind: Any) -> HostEvent:
    """The next event of ``kind`` (others before it are skipped)."""
    async with asyncio.timeout(TIMEOUT):
        async for event in stream:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the stream ended before a {kind.__name__}")


def test_links_sync_presence_and_close_arrive_in_order() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=3, latency=0.005)
        alice = Peer(pycrdt.Doc(), room="r", network=network)
        stream = alice.events()  # made before start: nothing is missed
        assert alice.connection is ConnectionState.CONNECTING
        async with alice:
            bob = Peer(pycrdt.Doc(), room="r", network=network)
            async with bob:
                assert await next_of(stream, PeerLinked) == PeerLinked(bob.id)
                assert await next_of(stream, Synced) == Synced(frozenset({bob.id}))
                assert alice.connection is ConnectionState.LINKED
                bob.awareness.set_local_state_field("user", {"name": "bob"})
                change = await next_of(stream, PresenceChanged)
                assert isinstance(change, PresenceChanged)
                assert bob.awareness.client_id in change.added + change.updated
                alice.awareness.set_local_state_field("user", {"name": "alice"})  # local: no event
            # Both, in either order: presence is dropped as the link closes, in the same tick.
            gone = [await next_of(stream, PeerUnlinked | PresenceChanged) for _ in range(2)]
            assert PeerUnlinked(bob.id) in gone
            assert PresenceChanged((), (), (bob.awareness.client_id,)) in gone
            assert alice.connection is ConnectionState.CONNECTING
        assert [event async for event in stream] == []  # ended with the peer
        assert [event async for event in alice.events()] == []  # a late stream ends at once

    run(scenario())


def test_congestion_is_reported_as_it_starts_and_ends() -> None:
    settings = LinkSettings(send_buffer_high=8192, send_buffer_low=2048)

    async def scenario() -> None:
        network = SimNetwork(seed=5, latency=0.01)
        docs = [pycrdt.Doc(), pycrdt.Doc()]
        alice, bob = (
            Peer(doc, room="r", network=network, link_settings=settings, batch_window=0)
            for doc in docs
        )
        async with alice, bob:
            await alice.wait_for_peers(1)
            await alice.wait_synced()
            stream = alice.events()
            network.slow(bob.id, 1.0)
            text = docs[0].get("text", type=pycrdt.Text)
            for index in range(100):
                text.insert(len(text), f"{index:04d}".ljust(256, "."))
                await asyncio.sleep(0)
            assert await next_of(stream, CongestionChanged) == CongestionChanged(
                frozenset({bob.id})
            )
            assert await next_of(stream, CongestionChanged) == CongestionChanged(frozenset())
            await wait_converged(docs, timeout=TIMEOUT)

    run(scenario())


async def test_signaling_lost_and_back_over_webrtc() -> None:
    """A real server goes away and comes back on its port: the host hears both."""
    async with SignalingServer(host="127.0.0.1", port=0) as server:
        port = int(server.url.rsplit(":", 1)[1])
        alice = Peer(pycrdt.Doc(), room="r", signaling=server.url, host_addresses=("127.0.0.1",))
        assert alice.connection is ConnectionState.OFFLINE
        stream = alice.events()
        await alice.start()
        try:
            assert await next_of(stream, SignalingConnected) == SignalingConnected()
            assert alice.connection is ConnectionState.CONNECTING
            bob = Peer(pycrdt.Doc(), room="r", signaling=server.url, host_addresses=("127.0.0.1",))
            async with bob:
                assert await next_of(stream, PeerLinked) == PeerLinked(bob.id)
                await server.aclose()
                assert await next_of(stream, SignalingLost) == SignalingLost()
                assert alice.connection is ConnectionState.LINKED  # the link needs no server
            assert await next_of(stream, PeerUnlinked) == PeerUnlinked(bob.id)
            assert alice.connection is ConnectionState.OFFLINE
            async with SignalingServer(host="127.0.0.1", port=port):
                assert await next_of(stream, SignalingConnected) == SignalingConnected()
        finally:
            await alice.aclose()
