"""Peers over real aiortc data channels, introduced by a real signaling server, on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pycrdt
import pytest

from crdtsync import ConfigError, Peer
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing import wait_converged
from crdtsync.transport.webrtc import WebRTCConnector

TIMEOUT = 30.0
LOOPBACK = ("127.0.0.1",)


@asynccontextmanager
async def room(url: str, docs: Sequence[pycrdt.Doc[Any]], name: str) -> AsyncIterator[list[Peer]]:
    async with AsyncExitStack() as stack:
        peers = [
            await stack.enter_async_context(
                Peer(doc, room=name, signaling=url, host_addresses=LOOPBACK)
            )
            for doc in docs
        ]
        for peer in peers:
            await peer.wait_for_peers(len(peers) - 1, timeout=TIMEOUT)
            await peer.wait_synced(timeout=TIMEOUT)
        yield peers


@pytest.mark.parametrize("count", [2, 4, 8])
async def test_peers_converge_over_webrtc(count: int) -> None:
    async with SignalingServer(host="127.0.0.1", port=0) as server:
        docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(count)]
        async with room(server.url, docs, "notes") as peers:
            assert all(len(peer.peers) == count - 1 for peer in peers)
            for index, doc in enumerate(docs):  # everyone types at once
                text = doc.get("text", type=pycrdt.Text)
                text.insert(0, f"<{index}>")
                doc.get("map", type=pycrdt.Map)[f"k{index}"] = index
            await wait_converged(docs, timeout=TIMEOUT)
            final = str(docs[0].get("text", type=pycrdt.Text))
            assert sorted(final.replace(">", "> ").split()) == sorted(
                f"<{i}>" for i in range(count)
            )
            assert docs[-1].get("map", type=pycrdt.Map).to_py() == {
                f"k{i}": i for i in range(count)
            }


async def test_other_rooms_see_nothing() -> None:
    async with SignalingServer() as server:
        ours: list[pycrdt.Doc[Any]] = [pycrdt.Doc(), pycrdt.Doc()]
        theirs: list[pycrdt.Doc[Any]] = [pycrdt.Doc(), pycrdt.Doc()]
        async with room(server.url, ours, "ours") as ours_peers, room(server.url, theirs, "theirs"):
            ours[0]["text"] = pycrdt.Text("private")
            await wait_converged(ours, timeout=TIMEOUT)
            assert {peer.id for peer in ours_peers} == set(server.router.rooms["ours"])
            for doc in theirs:
                assert "text" not in list(doc.keys())


async def test_a_peer_that_leaves_is_unlinked_and_edits_go_on() -> None:
    async with SignalingServer() as server:
        docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(3)]
        async with room(server.url, docs, "notes") as (alice, _, carol):
            await carol.aclose()
            await alice.wait_for(lambda: carol.id not in alice.peers, timeout=TIMEOUT, what="drop")
            docs[1]["text"] = pycrdt.Text("after carol left")
            await wait_converged(docs[:2], timeout=TIMEOUT)


def test_ice_servers_must_be_stun_or_turn_urls() -> None:
    with pytest.raises(ConfigError, match="stun: or turn:"):
        WebRTCConnector("ws://127.0.0.1:1", "room", ice_servers=["http://example.invalid"])


async def test_a_3mb_document_reaches_a_newcomer_intact() -> None:
    """Far over the data channel's message limit: the codec chunks and reassembles it."""
    big: pycrdt.Doc[Any] = pycrdt.Doc()
    text = big.get("text", type=pycrdt.Text)
    for line in range(300):  # many items, as typing makes, not one giant string
        text.insert(len(text), f"line {line:03d}: " + "x" * 10_000 + "\n")
    assert len(big.get_update()) > 3_000_000
    newcomer: pycrdt.Doc[Any] = pycrdt.Doc()
    async with (
        SignalingServer() as server,
        room(server.url, [big], "big"),
        Peer(newcomer, room="big", signaling=server.url, host_addresses=LOOPBACK) as peer,
    ):
        await peer.wait_for_peers(1, timeout=TIMEOUT)
        await peer.wait_synced(timeout=TIMEOUT)
        assert str(newcomer.get("text", type=pycrdt.Text)) == str(text)
