"""The signaling server over real sockets on 127.0.0.1, with the websockets client."""

from __future__ import annotations

import asyncio
import logging

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from crdtsync.protocol.signaling import (
    Challenge,
    Error,
    Hello,
    Join,
    Joined,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    Prove,
    Signal,
    SignalingMessage,
    Welcome,
    decode_signaling,
    encode_signaling,
)
from crdtsync.signaling.identity import Identity, normalise_origin
from crdtsync.signaling.router import SignalingSettings
from crdtsync.signaling.server import SignalingServer

TIMEOUT = 10.0


async def send(ws: ClientConnection, message: SignalingMessage) -> None:
    await ws.send(encode_signaling(message))


async def receive(ws: ClientConnection) -> SignalingMessage:
    data = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(data, bytes)
    return decode_signaling(data, max_size=1 << 20)


async def hello(
    url: str, identity: Identity | None = None, *, source: str = "127.0.0.1"
) -> tuple[ClientConnection, str]:
    """Log in as ``identity`` (a new one by default) from the address ``source``."""
    ws = await connect(url, compression=None, open_timeout=TIMEOUT, local_addr=(source, 0))
    identity = identity or Identity()
    await send(ws, Hello(identity.public_key))
    challenge = await receive(ws)
    assert isinstance(challenge, Challenge)
    await send(ws, Prove(identity.prove(normalise_origin(url), challenge.nonce)))
    welcome = await receive(ws)
    assert isinstance(welcome, Welcome)
    return ws, welcome.peer_id


async def test_peers_meet_and_signal_through_the_server() -> None:
    async with SignalingServer(host="127.0.0.1", port=0) as server:
        assert server.url.startswith("ws://127.0.0.1:")
        alice, alice_id = await hello(server.url)
        bob, bob_id = await hello(server.url)
        assert alice_id != bob_id
        await send(alice, Join("notes"))
        assert await receive(alice) == Joined("notes", frozenset())
        await send(bob, Join("notes"))
        assert await receive(bob) == Joined("notes", frozenset({alice_id}))
        assert await receive(alice) == PeerJoined("notes", bob_id)
        await send(bob, Signal("notes", alice_id, b"sdp offer"))
        assert await receive(alice) == Signal("notes", bob_id, b"sdp offer")
        await bob.close()
        assert await receive(alice) == PeerLeft("notes", bob_id)
        await alice.close()


async def test_hostile_client_is_cut_off_and_others_keep_being_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="crdtsync.signaling")
    settings = SignalingSettings(max_violations=3, max_message_size=4096)
    async with SignalingServer(settings=settings) as server:
        good, _ = await hello(server.url)
        await send(good, Join("room"))
        await receive(good)
        bad, _ = await hello(server.url)
        for garbage in (b"\xc1\xc1", b"\x81\xa1t\xa5bogus", b"not msgpack"):
            await bad.send(garbage)
            refusal = await receive(bad)
            assert isinstance(refusal, Error)
            assert refusal.code == "malformed"
        await bad.send(b"\xc1")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(bad.recv(), TIMEOUT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008

        huge, _ = await hello(server.url)
        await huge.send(b"x" * 10_000)  # over max_message_size: websockets closes with 1009
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(huge.recv(), TIMEOUT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009

        await send(good, Ping(7))
        assert await receive(good) == Pong(7)
        await good.close()
    assert "refused (malformed)" in caplog.text


async def test_server_close_ends_every_connection() -> None:
    server = SignalingServer()
    await server.start()
    ws, _ = await hello(server.url)
    await server.aclose()
    await server.aclose()  # idempotent
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), TIMEOUT)
