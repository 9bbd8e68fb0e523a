"""ICE host candidates held to loopback, with a real aiortc connection pair on 127.0.0.1."""

from __future__ import annotations

import asyncio

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from crdtsync.transport.ice_hosts import host_addresses


def test_choice_applies_inside_the_block_only() -> None:
    with host_addresses(["127.0.0.1", "::1"]):
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
        with host_addresses(None):
            assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)


async def test_two_peer_connections_open_a_data_channel_on_loopback() -> None:
    with host_addresses(["127.0.0.1"]):
        offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            channel = offerer.createDataChannel("crdtsync", ordered=True)
            opened = asyncio.Event()
            received: asyncio.Queue[bytes] = asyncio.Queue()
            channel.on("open", opened.set)
            answerer.on("datachannel", lambda remote: remote.on("message", received.put_nowait))
            await offerer.setLocalDescription(await offerer.createOffer())
            offer = offerer.localDescription
            candidates = [line for line in offer.sdp.splitlines() if line.startswith("a=candidate")]
            assert candidates
            assert all(" 127.0.0.1 " in line for line in candidates), candidates
            await answerer.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            await answerer.setLocalDescription(await answerer.createAnswer())
            answer = answerer.localDescription
            await offerer.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
            await asyncio.wait_for(opened.wait(), 10)
            channel.send(b"over loopback")
            assert await asyncio.wait_for(received.get(), 10) == b"over loopback"
        finally:
            await offerer.close()
            await answerer.close()
