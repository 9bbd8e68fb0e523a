"""M5 against a real server on 127.0.0.1: remote input never crashes a handler (close 1011)
and never makes a long log line or a traceback, whatever it echoes."""

from __future__ import annotations

import asyncio
import logging
import random

import msgpack
import pytest
from test_server import TIMEOUT, hello, receive, send
from test_server_ywebrtc import get, open_, put
from websockets.asyncio.client import ClientConnection, connect

from crdtsync.protocol.signaling import Error, Join, Joined, Ping, Pong, encode_signaling
from crdtsync.protocol.ywebrtc_signaling import Ping as TopicPing
from crdtsync.protocol.ywebrtc_signaling import Pong as TopicPong
from crdtsync.signaling.router import SignalingSettings
from crdtsync.signaling.server import SignalingServer

MAX_LINE = 400  # "a few hundred characters"


def assert_quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "the refusals are logged"
    longest = max(caplog.records, key=lambda r: len(r.getMessage()))
    assert len(longest.getMessage()) <= MAX_LINE, longest.getMessage()[:500]
    assert not [r for r in caplog.records if r.exc_info or r.stack_info]
    assert "Traceback" not in caplog.text


async def still_served(ws: ClientConnection, nonce: int) -> None:
    """A ping round trip: the handler did not die (no 1011) and the client was not dropped."""
    await send(ws, Ping(nonce))
    while (reply := await receive(ws)) != Pong(nonce):
        assert isinstance(reply, Error)


async def test_native_input_that_used_to_crash_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    settings = SignalingSettings(token_secret=b"server secret")
    nul_room = "\x00" * 256
    bad_ping = msgpack.packb({"t": "ping", "n": "7" * 2000})
    trailing = encode_signaling(Ping(1)) + rng.randbytes(2048)
    attacks: list[list[bytes]] = [
        [bad_ping],
        [trailing],
        [encode_signaling(Join(nul_room, "1.2")), encode_signaling(Join(nul_room, "1.2"))],
        [encode_signaling(Join("notes", "4000000000." + "é" * 64))],  # non-ASCII digest
        [encode_signaling(Join("notes", "⁴⁰⁰⁰⁰⁰⁰⁰⁰⁰." + "0" * 64))],  # superscript expiry
        [msgpack.packb({"t": "join", "room": "r", "token": "\U0001f600" * 500})],
    ]
    async with SignalingServer(settings=settings) as server:
        for index, frames in enumerate(attacks):
            ws, _ = await hello(server.url)
            for frame in frames:
                await ws.send(frame)
                reply = await receive(ws)
                assert isinstance(reply, Error), reply
                assert len(reply.message) <= 200
            await still_served(ws, index)
            await ws.close()
        # Twenty unauthenticated connections, a full-size message each: was 17 MB of log.
        before = len(caplog.records)
        huge = [
            b"\xc1" * 65_000,
            msgpack.packb({"t": "x" * 65_000}),
            msgpack.packb("y" * 65_000),
            msgpack.packb({"t": "hello", "v": 2, "key": rng.randbytes(65_000)}),
        ]
        for index in range(20):
            ws = await connect(server.url, compression=None, open_timeout=TIMEOUT)
            await ws.send(huge[index % len(huge)])
            assert isinstance(await receive(ws), Error)  # refused, not closed (no 1011)
            await ws.close()
        grown = sum(  # what a server logging at INFO would write
            len(r.getMessage()) + 1
            for r in caplog.records[before:]
            if r.name.startswith("crdtsync") and r.levelno >= logging.INFO
        )
        print(f"log grew {grown} bytes for 20 x 65 KB")
        assert grown < 20 * MAX_LINE
    assert_quiet_logs(caplog)


async def test_y_webrtc_and_handshake_input_stay_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with SignalingServer() as server:
        ws = await open_(server.url)
        for frame in (
            '{"type":"subscribe","topics":["' + "\\u0000" * 2_000 + '"]}',
            '{"type":"publish","topic":"' + "t" * 60_000 + '","data":1}',
            "[" * 60_000,
            '{"type":"ping"}' + " x" * 20_000,
        ):
            await ws.send(frame)
            reply = await get(ws)
            assert len(str(reply)) <= 400
        await put(ws, TopicPing())
        while (reply := await get(ws)) != TopicPong():
            pass
        await ws.close()
        # A handshake websockets refuses, with a 6 KB header it quotes in its exception.
        host, port = server.url.removeprefix("ws://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + b"A" * 6000 + b"\r\n\r\n"
        )
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), TIMEOUT)
        assert response.startswith(b"HTTP/1.1 400")
        writer.close()
        await writer.wait_closed()
    assert any("handshake" in r.getMessage() for r in caplog.records)
    assert_quiet_logs(caplog)


async def test_a_room_of_nuls_joins_once_and_is_echoed_short() -> None:
    async with SignalingServer() as server:
        ws, _ = await hello(server.url)
        room = "\x00" * 256
        await send(ws, Join(room))
        assert await receive(ws) == Joined(room, frozenset())
        await send(ws, Join(room))
        refusal = await receive(ws)
        assert isinstance(refusal, Error)
        assert refusal.code == "already-joined"
        await still_served(ws, 1)
        await ws.close()
