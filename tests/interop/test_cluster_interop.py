"""A y-webrtc room across two of our servers sharing rooms through a real redis-server.

Unmodified Node y-webrtc peers, each given one server, and a Python peer in y-webrtc's
dialect on the other: the servers fan each room's announces and signals out through Redis,
so every pair links over WebRTC and the documents converge.
"""

from __future__ import annotations

from typing import Any

import pycrdt
from conftest import NodePeerFactory, require_loopback_namespace, require_node
from needs import require_program

from crdtsync import Peer
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing.redis_server import RedisServer

TIMEOUT = 20.0
LOOPBACK = ("127.0.0.1",)


def text_of(doc: pycrdt.Doc[Any]) -> pycrdt.Text:
    return doc.get("text", type=pycrdt.Text)


async def test_a_ywebrtc_room_spans_servers(node_peers: NodePeerFactory) -> None:
    require_node()
    require_loopback_namespace()
    require_program("redis-server", "redis-server")
    redis = await RedisServer.start()
    try:
        async with (
            SignalingServer(port=0, redis=redis.url) as one,
            SignalingServer(port=0, redis=redis.url) as two,
        ):
            first, second = await node_peers(2, "spans", one.url)
            doc: pycrdt.Doc[Any] = pycrdt.Doc()
            async with Peer(
                doc, room="spans", signaling=two.url, dialect="y-webrtc", host_addresses=LOOPBACK
            ) as peer:
                await peer.wait_for_peers(2, timeout=TIMEOUT)  # both Node peers, via Redis
                text_of(doc).insert(0, "python on two; ")
                await first.insert(0, "node on one; ")
                for node in (first, second):
                    await node.wait_until("text.includes('python on two')", timeout=TIMEOUT)
                await peer.wait_for(
                    lambda: "node on one" in str(text_of(doc)), timeout=TIMEOUT, what="node's"
                )
                assert str(text_of(doc)) == await second.text()
    finally:
        await redis.stop()
