"""The benchmarks' rooms: linked peers, and the mesh of bare aiortc channels."""

from __future__ import annotations

import asyncio
from typing import Any

import pycrdt

from crdtsync.bench.rooms import linked_peers, raw_mesh
from crdtsync.signaling.server import SignalingServer

TIMEOUT = 30.0


async def test_linked_peers_are_linked_with_all_others_and_synced() -> None:
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(3)]
    async with (
        SignalingServer() as server,
        linked_peers(server.url, docs, room="rooms", timeout=TIMEOUT) as peers,
    ):
        assert [len(peer.peers) for peer in peers] == [2, 2, 2]
        assert all(peer.synced for peer in peers)
        assert len({peer.id for peer in peers}) == 3


async def test_raw_mesh_opens_a_channel_between_every_two_parties() -> None:
    async with raw_mesh(3, timeout=TIMEOUT) as mesh:
        assert [sorted(ends) for ends in mesh.channels] == [[1, 2], [0, 2], [0, 1]]
        assert all(
            channel.readyState == "open" for ends in mesh.channels for channel in ends.values()
        )
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        mesh.channels[2][0].on("message", received.set_result)
        mesh.channels[0][2].send(b"hello")
        assert await asyncio.wait_for(received, TIMEOUT) == b"hello"
