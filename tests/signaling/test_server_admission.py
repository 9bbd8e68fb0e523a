"""M3 against a real server on 127.0.0.1: connection caps, the login deadline, byte rates.

127.0.0.0/8 is all loopback on Linux, so clients bind 127.0.0.x to be different addresses.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time

import pytest
from test_server import TIMEOUT, hello, receive, send
from test_server_backpressure import PAYLOAD
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from crdtsync.protocol.signaling import Error, Hello, Join, Ping, Pong, Signal
from crdtsync.signaling.identity import Identity
from crdtsync.signaling.router import SignalingSettings
from crdtsync.signaling.server import SignalingServer


async def open_ws(url: str, source: str = "127.0.0.1") -> ClientConnection:
    return await connect(url, compression=None, open_timeout=TIMEOUT, local_addr=(source, 0))


async def refused_status(url: str, source: str = "127.0.0.1") -> int:
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(url, source)
    return refused.value.response.status_code


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refusing connections" in r.getMessage()]


async def test_one_address_cannot_take_every_connection(caplog: pytest.LogCaptureFixture) -> None:
    """Was: one client opened 3,000 connections and locked everyone else out."""
    caplog.set_level(logging.INFO)
    settings = SignalingSettings(max_connections_per_address=8)
    async with SignalingServer(settings=settings) as server:
        held = [await open_ws(server.url) for _ in range(8)]
        for _ in range(20):
            assert await refused_status(server.url) == 503
        assert len(refusal_lines(caplog)) == 1  # once per address per interval, not 20 times
        assert "address-full" in refusal_lines(caplog)[0]
        other, _ = await hello(server.url, source="127.0.0.2")  # everyone else still gets in
        await send(other, Ping(1))
        assert await receive(other) == Pong(1)
        per_connection = ("HTTP response", "connection rejected", "connection closed")
        assert not any(r.getMessage().startswith(per_connection) for r in caplog.records)
        for ws in [*held, other]:
            await ws.close()


async def test_the_server_as_a_whole_is_capped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with SignalingServer(settings=SignalingSettings(max_connections=6)) as server:
        held = [await open_ws(server.url, f"127.0.0.{2 + i}") for i in range(6)]
        for i in range(10):
            assert await refused_status(server.url, f"127.0.1.{i}") == 503
        assert [line for line in refusal_lines(caplog) if "server-full" in line] != []
        assert len(refusal_lines(caplog)) == 1
        await held[0].close()
        await server.wait_for_connection_count(5, timeout=TIMEOUT)  # its socket closed too
        again = await open_ws(server.url, "127.0.1.1")
        for ws in [*held[1:], again]:
            await ws.close()


async def test_a_login_must_finish_within_the_login_deadline() -> None:
    """Was 45 s (the idle timeout) to finish hello..prove; now login_timeout."""
    settings = SignalingSettings(login_timeout=0.5, idle_timeout=600.0)
    async with SignalingServer(settings=settings) as server:
        half = await open_ws(server.url)
        await send(half, Hello(Identity().public_key))
        await receive(half)  # the challenge, never answered
        silent = await open_ws(server.url)  # never sends a frame
        host, port = server.url.removeprefix("ws://").rsplit(":", 1)
        raw = socket.create_connection((host, int(port)))  # never sends its HTTP request
        raw.setblocking(False)
        started = time.monotonic()
        for ws in (half, silent):
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
        loop = asyncio.get_running_loop()
        assert await asyncio.wait_for(loop.sock_recv(raw, 1024), TIMEOUT) == b""
        raw.close()
        assert time.monotonic() - started < 0.5 + 2.0  # not the 600 s idle timeout
        await server.wait_for_connection_count(0, timeout=TIMEOUT)


async def test_bytes_relayed_per_connection_are_budgeted() -> None:
    """Was: 40 connections within their message rate relayed 140 MB/s."""
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    settings = SignalingSettings(max_violations=1 << 20)  # keep them flooding: count the bytes
    async with SignalingServer(settings=settings) as server:
        flooders = [await hello(server.url, source=f"127.0.0.{2 + i}") for i in range(8)]
        for ws, peer_id in flooders:
            await send(ws, Join(f"own-{peer_id}"))
            await receive(ws)
        honest, _ = await hello(server.url)
        payload = rng.randbytes(PAYLOAD)
        started = time.monotonic()

        async def flood(ws: ClientConnection, peer_id: str) -> tuple[int, int]:
            for _ in range(40):  # 2.4 MB each, well within 50 messages/s and the burst
                await send(ws, Signal(f"own-{peer_id}", peer_id, payload))
            await send(ws, Ping(1))
            relayed = refused = 0
            while (message := await receive(ws)) != Pong(1):
                if isinstance(message, Signal):
                    relayed += len(message.data)
                else:
                    assert isinstance(message, Error)
                    assert message.code == "rate-limited"
                    assert "bytes/s" in message.message
                    refused += 1
            return relayed, refused

        results = await asyncio.gather(*(flood(ws, peer_id) for ws, peer_id in flooders))
        elapsed = time.monotonic() - started
        budget = settings.byte_burst + settings.bytes_per_second * elapsed
        print(f"relayed {[r for r, _ in results]} bytes in {elapsed:.2f} s; budget {budget:.0f}")
        for relayed, refused in results:
            assert refused > 0
            assert relayed <= budget
        await send(honest, Ping(2))
        assert await receive(honest) == Pong(2)
        for ws, _ in [*flooders, (honest, "")]:
            await ws.close()


async def test_sockets_that_never_speak_count_and_are_refused_before_they_do() -> None:
    """Counting starts at TCP accept: silent sockets cannot hold descriptors past the cap."""
    settings = SignalingSettings(max_connections_per_address=4, login_timeout=600.0)
    async with SignalingServer(settings=settings) as server:
        loop = asyncio.get_running_loop()
        host, port = server.url.removeprefix("ws://").rsplit(":", 1)
        silent = []
        for _ in range(4):
            sock = socket.create_connection((host, int(port)))
            sock.setblocking(False)
            silent.append(sock)
        await server.wait_for_connection_count(4, timeout=TIMEOUT)
        extra = socket.create_connection((host, int(port)))
        extra.setblocking(False)
        answer = await asyncio.wait_for(loop.sock_recv(extra, 4096), TIMEOUT)  # sent nothing
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"4 connections from this address" in answer
        assert await refused_status(server.url) == 503
        for sock in [*silent, extra]:
            sock.close()
        await server.wait_for_connection_count(0, timeout=TIMEOUT)
        ws = await open_ws(server.url)  # the seats are free again
        await ws.close()
