"""Rooms for the benchmarks: N linked ``Peer``s, or the same mesh of bare aiortc channels.

``linked_peers`` starts one ``Peer`` per document, all at once, through a signaling server,
and returns once every peer is linked with all the others and synced. ``raw_mesh`` opens the
connections those peers would, N*(N-1)/2 ``RTCPeerConnection`` pairs with one data channel
each, with the offer and answer handed over in-process (no signaling server, no protocol on
top), ICE held to loopback as the WebRTC transport holds it: the floor a mesh of aiortc
connections cannot beat, for setup time and for message delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pycrdt
from aiortc import RTCDataChannel, RTCPeerConnection

from crdtsync.peer import Peer
from crdtsync.transport.ice_hosts import host_addresses
from crdtsync.transport.webrtc import connect_tasks_ended, ice_configuration, when_open

__all__ = ["LOOPBACK", "RawMesh", "linked_peers", "raw_mesh"]

LOOPBACK = ("127.0.0.1",)


@asynccontextmanager
async def linked_peers(
    url: str,
    docs: Sequence[pycrdt.Doc[Any]],
    *,
    room: str,
    timeout: float,
    peer_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[list[Peer]]:
    """One ``Peer`` per doc in ``room`` of the signaling server at ``url``, started together;
    entered once each is linked with all the others and synced, closed on exit.
    ``peer_options`` go to every ``Peer`` (``ice_transport_policy="relay"``, ...)."""
    options = dict(peer_options or {})
    peers = [
        Peer(doc, room=room, signaling=url, host_addresses=LOOPBACK, **options) for doc in docs
    ]
    try:
        async with asyncio.timeout(timeout):
            async with asyncio.TaskGroup() as group:
                for peer in peers:
                    group.create_task(peer.start())
            async with asyncio.TaskGroup() as group:
                for peer in peers:
                    group.create_task(_linked(peer, len(peers) - 1, timeout))
        yield peers
    finally:
        # All at once, as a room empties at the end of a meeting; one by one, each leaver
        # would make the rest redial it until the signaling server tells them it is gone.
        await asyncio.gather(*(peer.aclose() for peer in peers))


async def _linked(peer: Peer, others: int, timeout: float) -> None:
    await peer.wait_for_peers(others, timeout=timeout)
    await peer.wait_synced(timeout=timeout)


@dataclass(frozen=True, slots=True)
class RawMesh:
    """Open data channels between ``nodes`` parties: ``channels[i][j]`` is i's end towards j."""

    nodes: int
    channels: list[dict[int, RTCDataChannel]]


@asynccontextmanager
async def raw_mesh(nodes: int, *, timeout: float) -> AsyncIterator[RawMesh]:
    """Open a data channel between every two of ``nodes`` parties, all at once; entered once
    every channel is open at both ends, every connection closed on exit."""
    pairs = [(low, high) for high in range(nodes) for low in range(high)]
    # Configured as the WebRTC transport does on loopback: no ICE servers (no STUN).
    connections = [(_connection(), _connection()) for _ in pairs]
    try:
        async with asyncio.timeout(timeout), asyncio.TaskGroup() as group:
            opening = [group.create_task(_open(*pair)) for pair in connections]
        channels: list[dict[int, RTCDataChannel]] = [{} for _ in range(nodes)]
        for (low, high), task in zip(pairs, opening, strict=True):
            channels[low][high], channels[high][low] = task.result()
        yield RawMesh(nodes, channels)
    finally:
        for offerer, answerer in connections:
            await offerer.close()
            await answerer.close()
        await connect_tasks_ended()


def _connection() -> RTCPeerConnection:
    # Built as our connectors build theirs (ice_configuration), check pacing included, so
    # the floor is bare aiortc as crdtsync runs it.
    return RTCPeerConnection(ice_configuration(()))


async def _open(
    offerer: RTCPeerConnection, answerer: RTCPeerConnection
) -> tuple[RTCDataChannel, RTCDataChannel]:
    """Offer, answer and open one data channel, as a dial and its answer do in the transport."""
    loop = asyncio.get_running_loop()
    arrived: asyncio.Future[RTCDataChannel] = loop.create_future()
    answerer.on("datachannel", arrived.set_result)
    channel = offerer.createDataChannel("bench", ordered=True)
    opened = when_open(channel)
    with host_addresses(LOOPBACK):
        await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    with host_addresses(LOOPBACK):
        await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    await opened
    other_end = await arrived
    if other_end.readyState != "open":
        await when_open(other_end)
    return channel, other_end
