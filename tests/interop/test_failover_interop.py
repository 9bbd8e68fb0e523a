"""Failover between two of y-webrtc's own signaling servers (``bin/server.js``, unmodified).

Python y-webrtc peers listed both servers and met on the first; it is killed with SIGKILL;
their links stay up and carry edits, they move to the second, and a Node y-webrtc peer that
knows only the second meets them there.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pycrdt
from conftest import NodePeerFactory, require_loopback_namespace, require_node
from yjs_peers import REPO

from crdtsync import Peer
from crdtsync.bench.node import ywebrtc_server
from crdtsync.testing import wait_converged

TIMEOUT = 20.0
LOOPBACK = ("127.0.0.1",)


def text_of(doc: pycrdt.Doc[Any]) -> pycrdt.Text:
    return doc.get("text", type=pycrdt.Text)


async def test_python_peers_fail_over_between_ywebrtc_servers(
    node_peers: NodePeerFactory,
) -> None:
    require_node()
    require_loopback_namespace()
    async with ywebrtc_server(REPO) as a, ywebrtc_server(REPO) as b:
        docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(2)]
        peers = [
            Peer(
                doc,
                room="failover",
                signaling=[a.url, b.url],
                dialect="y-webrtc",
                host_addresses=LOOPBACK,
            )
            for doc in docs
        ]
        watchers: list[asyncio.Task[None]] = []
        try:
            for peer in peers:
                await peer.start()
            for peer in peers:
                await peer.wait_for_peers(1, timeout=TIMEOUT)
            watchers = [
                asyncio.create_task(
                    peer.wait_for(lambda p=peer: not p.peers, timeout=3600, what="a lost link")
                )
                for peer in peers
            ]
            os.kill(a.pid, signal.SIGKILL)
            text_of(docs[0]).insert(0, "python;")
            await wait_converged(docs, timeout=TIMEOUT)

            (node,) = await node_peers(1, "failover", b.url)
            for peer in peers:
                await peer.wait_for_peers(2, timeout=TIMEOUT)  # the Node peer, found on B
            await node.insert(0, "node;")
            await node.wait_until("text.includes('python;')", timeout=TIMEOUT)
            for peer, doc in zip(peers, docs, strict=True):
                await peer.wait_for(
                    lambda doc=doc: "node;" in str(text_of(doc)), timeout=TIMEOUT, what="node;"
                )
            assert str(text_of(docs[1])) == await node.text()
            assert sorted(str(text_of(docs[1]))) == sorted("python;node;")
            assert not any(watcher.done() for watcher in watchers)  # linked throughout
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            for peer in peers:
                await peer.aclose()
