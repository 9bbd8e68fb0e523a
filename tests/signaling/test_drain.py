"""Draining: a server told to go away refuses newcomers, says so on /healthz, closes its
clients with 1001 (going away) so they move to another server, and stops."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pycrdt
import pytest
from probes import TIMEOUT, health, scrape, start_signal, value
from test_server import hello, receive, send
from test_server_ywebrtc import closed_with, open_, settle
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from crdtsync import Peer
from crdtsync.protocol.signaling import Join, Joined
from crdtsync.signaling.router import SignalingSettings
from crdtsync.signaling.server import SignalingServer

# A SIGTERM'd server is gone within this, its clients closed (the bound).
EXIT_WITHIN = 5.0
LOOPBACK = ["127.0.0.1"]


async def test_a_draining_server_refuses_newcomers_reports_503_and_closes_with_1001() -> None:
    # A close that is not answered keeps the drain going until this test lets it end.
    settings = SignalingSettings(close_timeout=TIMEOUT)
    server = SignalingServer(settings=settings)
    await server.start()
    url = server.url
    try:
        alice, _ = await hello(url)
        await send(alice, Join("notes"))
        assert isinstance(await receive(alice), Joined)
        topic = await open_(server.url, "topic")
        await settle(topic)
        alice.transport.pause_reading()  # alice will not answer the close yet

        draining = asyncio.create_task(server.drain(timeout=TIMEOUT))
        # The drain's first step runs before the probe's connection is accepted.
        status, answer = await health(server.url)
        assert (status, answer["status"]) == (503, "draining")
        with pytest.raises(InvalidStatus, match="503"):
            await connect(server.url, open_timeout=TIMEOUT)
        assert await closed_with(topic) == 1001
        samples = await scrape(server.url)
        assert value(samples, "crdtsync_signaling_refusals_total", code="draining") == 1
        assert value(samples, "crdtsync_signaling_status", crdtsync_signaling_status="draining")
        assert not draining.done()  # alice is still there

        alice.transport.resume_reading()
        await asyncio.wait_for(alice.wait_closed(), TIMEOUT)
        assert alice.close_code == 1001
        await asyncio.wait_for(draining, TIMEOUT)
        with pytest.raises(ConnectionRefusedError):  # it stopped listening
            await connect(url, open_timeout=TIMEOUT)
    finally:
        await server.aclose()


async def test_sigterm_closes_clients_with_1001_and_exits_within_5_s() -> None:
    process, url = await start_signal()
    try:
        native, _ = await hello(url)
        await send(native, Join("notes"))
        assert isinstance(await receive(native), Joined)
        topic = await open_(url, "topic")
        await settle(topic)

        process.send_signal(signal.SIGTERM)
        assert await closed_with(topic) == 1001
        await asyncio.wait_for(native.wait_closed(), TIMEOUT)
        assert native.close_code == 1001
        assert await asyncio.wait_for(process.wait(), EXIT_WITHIN) == 0
    finally:
        if process.returncode is None:
            process.kill()  # never leave a server behind a failed test
            await process.wait()


async def test_linked_peers_stay_linked_and_in_sync_while_their_server_drains() -> None:
    async with SignalingServer() as server:
        docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc(), pycrdt.Doc()]
        async with (
            Peer(docs[0], room="notes", signaling=server.url, host_addresses=LOOPBACK) as a,
            Peer(docs[1], room="notes", signaling=server.url, host_addresses=LOOPBACK) as b,
        ):
            await a.wait_for_peers(1, timeout=TIMEOUT)
            await b.wait_for_peers(1, timeout=TIMEOUT)
            await server.drain(timeout=TIMEOUT)  # both hear 1001; the data channel stays
            text = docs[0].get("text", type=pycrdt.Text)
            text += "after the drain"
            seen = docs[1].get("text", type=pycrdt.Text)
            await b.wait_for(lambda: str(seen) == "after the drain", timeout=TIMEOUT, what="sync")
            assert a.peers == {b.id}
