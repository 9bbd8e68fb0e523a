"""Subdocuments over real aiortc links on 127.0.0.1: made on one peer, edited on every one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pycrdt
from subdoc_pages import files, page_text, until_page_open

from crdtsync import Peer
from crdtsync.signaling.server import SignalingServer

TIMEOUT = 60.0
LOOPBACK = ("127.0.0.1",)


@asynccontextmanager
async def workspaces(url: str, count: int) -> AsyncIterator[list[Peer]]:
    async with AsyncExitStack() as stack:
        peers = [
            await stack.enter_async_context(
                Peer(room="subdocs", signaling=url, host_addresses=LOOPBACK)
            )
            for _ in range(count)
        ]
        for peer in peers:
            await peer.wait_for_peers(count - 1, timeout=TIMEOUT)
        yield peers


async def test_a_subdoc_made_on_one_peer_syncs_both_ways_over_webrtc() -> None:
    async with (
        SignalingServer(host="127.0.0.1", port=0) as server,
        workspaces(server.url, 3) as peers,
    ):
        parents = [await peer.open("notes", timeout=TIMEOUT) for peer in peers]
        page = pycrdt.Doc()
        page.get("text", type=pycrdt.Text).insert(0, "page")
        files(parents[0])["page"] = page
        await until_page_open(peers, parents, page, "page", timeout=TIMEOUT)
        for index, parent in enumerate(parents[1:], start=1):  # edits through the parents
            page_in = files(parent)["page"]
            page_in.get("text", type=pycrdt.Text).insert(0, f"<{index}>")
        for peer, parent in zip(peers, parents, strict=True):
            await peer.wait_for(
                lambda parent=parent: (
                    (page_text(parent) or "").endswith("page")
                    and all(f"<{index}>" in (page_text(parent) or "") for index in (1, 2))
                ),
                timeout=TIMEOUT,
                what="every edit in the page",
            )
        assert len({page_text(parent) for parent in parents}) == 1
