"""Workspaces over real aiortc links on 127.0.0.1: a hundred documents, one connection per pair."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pycrdt
from aiortc import RTCPeerConnection

from crdtsync import Peer
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing import wait_converged

TIMEOUT = 60.0
LOOPBACK = ("127.0.0.1",)
FILES = [f"src/file-{index}.txt" for index in range(100)]


def text(doc: pycrdt.Doc) -> str:
    return str(doc.get("text", type=pycrdt.Text))


def connected_peer_connections() -> int:
    """RTCPeerConnections alive and connected in this process (both ends of each pair)."""
    return sum(
        1
        for thing in gc.get_objects()
        if type(thing) is RTCPeerConnection and thing.connectionState == "connected"
    )


@asynccontextmanager
async def workspaces(url: str, count: int, **options: object) -> AsyncIterator[list[Peer]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                Peer(room="workspace", signaling=url, host_addresses=LOOPBACK, **options)  # type: ignore[arg-type]
            )
            for _ in range(count)
        ]


async def open_all(peer: Peer) -> list[pycrdt.Doc]:
    return list(await asyncio.gather(*(peer.open(name, timeout=TIMEOUT) for name in FILES)))


async def test_three_peers_share_a_hundred_documents_over_one_connection_per_pair() -> None:
    async with (
        SignalingServer(host="127.0.0.1", port=0) as server,
        workspaces(server.url, 3) as peers,
    ):
        for peer in peers:
            await peer.wait_for_peers(2, timeout=TIMEOUT)
        opened = [await open_all(peer) for peer in peers]
        for index, docs in enumerate(opened):  # everyone writes in every file at once
            for number, doc in enumerate(docs):
                doc.get("text", type=pycrdt.Text).insert(0, f"<{index}:{number}>")
        for number in range(len(FILES)):
            await wait_converged([docs[number] for docs in opened], timeout=TIMEOUT)
        assert connected_peer_connections() == 3 * 2  # a pair has two ends
        for peer in peers:
            assert len(peer.link_stats()) == 2
            assert peer.documents == frozenset(FILES)
        async with workspaces(server.url, 1) as (newcomer,):
            await newcomer.wait_for_peers(3, timeout=TIMEOUT)
            arrived = await open_all(newcomer)
            for number, doc in enumerate(arrived):
                assert text(doc) == text(opened[0][number])
                assert all(f"<{index}:{number}>" in text(doc) for index in range(3))
            assert connected_peer_connections() == 6 * 2


async def test_a_keeper_serves_fifty_documents_it_has_closed(tmp_path: Path) -> None:
    names = FILES[:50]
    async with (
        SignalingServer(host="127.0.0.1", port=0) as server,
        workspaces(server.url, 1, store=tmp_path / "keeper.db") as (keeper,),
    ):
        for name in names:
            (await keeper.open(name)).get("text", type=pycrdt.Text).insert(0, f"kept {name}")
            await keeper.close_document(name)
        assert keeper.documents == frozenset()
        async with workspaces(server.url, 1) as (newcomer,):
            await newcomer.wait_for_peers(1, timeout=TIMEOUT)
            docs = await asyncio.gather(*(newcomer.open(name, timeout=TIMEOUT) for name in names))
            assert [text(doc) for doc in docs] == [f"kept {name}" for name in names]
            assert keeper.served == frozenset(names)  # loaded for the newcomer, not opened
