"""The y-webrtc signaling client against our server: subscribe, publish, reconnect."""

from __future__ import annotations

import asyncio

from crdtsync.signaling.server import SignalingServer
from crdtsync.signaling.ywebrtc_client import YWebrtcSignalingClient, with_token

TIMEOUT = 10.0


class Inbox:
    def __init__(self) -> None:
        self.connects = 0
        self.received: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

    def signaling_connected(self) -> None:
        self.connects += 1

    def publish_received(self, topic: str, data: object) -> None:
        self.received.put_nowait((topic, data))


def test_tokens_ride_in_the_query_string() -> None:
    assert with_token("ws://h:1", None) == "ws://h:1"
    assert with_token("ws://h:1", "a b&c") == "ws://h:1?token=a%20b%26c"
    assert with_token("ws://h:1/?x=1", "t") == "ws://h:1/?x=1&token=t"


async def test_publish_reaches_the_other_subscriber_and_survives_a_restart() -> None:
    async with SignalingServer("127.0.0.1", 0) as server:
        port = int(server.url.rsplit(":", 1)[1])
        alice, bob = Inbox(), Inbox()
        a = YWebrtcSignalingClient(server.url, alice, topics=("room",), reconnect_base=0.05)
        b = YWebrtcSignalingClient(server.url, bob, topics=("room",), reconnect_base=0.05)
        await a.start()
        await b.start()
        await a.wait_connected(timeout=TIMEOUT)
        await b.wait_connected(timeout=TIMEOUT)
        await _until_delivered(a, bob, {"type": "announce", "from": "alice"})
    # The server is gone: both notice, and come back once one listens on the port again.
    await a.wait_connected(False, timeout=TIMEOUT)
    async with SignalingServer("127.0.0.1", port):
        await a.wait_connected(timeout=TIMEOUT)
        await b.wait_connected(timeout=TIMEOUT)
        await _until_delivered(a, bob, {"type": "announce", "from": "again"})
        assert alice.connects == 2
        assert bob.connects == 2
        await a.aclose()
        await b.aclose()


async def _until_delivered(sender: YWebrtcSignalingClient, inbox: Inbox, payload: object) -> None:
    """Publish until ``inbox`` gets it: the other client's subscribe may still be on its way."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            assert await sender.publish("room", payload)
            try:
                async with asyncio.timeout(0.2):
                    while await inbox.received.get() != ("room", payload):
                        pass  # an earlier payload, delivered late
                    return
            except TimeoutError:
                continue
