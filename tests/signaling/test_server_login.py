"""L1 and L2 against a real server on 127.0.0.1: a login proof is for one server only, and
no key of small order logs in.

The relay is a hostile signaling server: it takes the victim's connection, dials the real
server as the victim, and passes every frame both ways. Version 1 proofs signed the bare
nonce, so the relayed challenge's proof logged the relay in as the victim.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from test_client import Listener
from test_server import TIMEOUT, receive, send
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from crdtsync.protocol.signaling import Challenge, Hello, Prove, Welcome
from crdtsync.signaling.client import SignalingClient
from crdtsync.signaling.router import SignalingSettings
from crdtsync.signaling.server import SignalingServer

NEUTRAL = bytes([1]) + bytes(31)


@asynccontextmanager
async def relay(
    target: str, *, forge_host: bool
) -> AsyncIterator[tuple[str, asyncio.Queue[object]]]:
    """A hostile server in front of ``target``; yields its URL and what ``target`` answered
    each relayed login (a Welcome, or the close code)."""
    outcomes: asyncio.Queue[object] = asyncio.Queue()
    url = ""

    async def handle(victim: ServerConnection) -> None:
        if forge_host:  # dial the target, but say Host: <the relay>
            host, port = target.removeprefix("ws://").rsplit(":", 1)
            sock = socket.create_connection((host, int(port)))
            upstream = await connect(url, sock=sock, compression=None, open_timeout=TIMEOUT)
        else:
            upstream = await connect(target, compression=None, open_timeout=TIMEOUT)
        try:
            await upstream.send(await victim.recv())  # hello
            await victim.send(await upstream.recv())  # the target's challenge
            await upstream.send(await victim.recv())  # the victim's proof
            outcomes.put_nowait(await receive(upstream))
        except ConnectionClosed as closed:
            outcomes.put_nowait(closed.rcvd.code if closed.rcvd else 1006)
        finally:
            await upstream.close()
            await victim.close()

    async with serve(handle, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}"
        yield url, outcomes


async def relayed_login(settings: SignalingSettings, *, forge_host: bool, port: int = 0) -> object:
    """What the real server made of the victim's proof, relayed."""
    async with (
        SignalingServer(port=port, settings=settings) as server,
        relay(server.url, forge_host=forge_host) as (url, outcomes),
    ):
        victim = SignalingClient(url, Listener(), rooms={}, reconnect_base=1.0)
        await victim.start()
        try:
            return await asyncio.wait_for(outcomes.get(), TIMEOUT)
        finally:
            await victim.aclose()


async def test_a_relayed_challenge_does_not_log_the_relay_in() -> None:
    """L1, default settings: the proof names the relay's origin, the server's Host is its own."""
    assert await relayed_login(SignalingSettings(), forge_host=False) == 1008


async def test_with_origins_set_a_relay_that_forges_host_gets_nowhere_either() -> None:
    """L1 with ``origins``: the server checks proofs against its configured origin only."""
    port = _free_port()
    settings = SignalingSettings(origins=(f"ws://127.0.0.1:{port}",))
    outcome = await relayed_login(settings, forge_host=True, port=port)
    assert outcome == 1008


async def test_without_origins_a_relay_that_forges_host_is_not_stopped() -> None:
    """The documented limit of the Host-header default: set ``origins`` in production."""
    outcome = await relayed_login(SignalingSettings(), forge_host=True)
    assert isinstance(outcome, Welcome)


async def test_the_neutral_point_cannot_log_in() -> None:
    """L2: key 01 00..00 with R = that point, S = 0 used to verify for every nonce."""
    async with SignalingServer() as server:
        ws = await connect(server.url, compression=None, open_timeout=TIMEOUT)
        await send(ws, Hello(NEUTRAL))
        assert isinstance(await receive(ws), Challenge)
        await send(ws, Prove(NEUTRAL + bytes(32)))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert server.router.rooms == {}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
