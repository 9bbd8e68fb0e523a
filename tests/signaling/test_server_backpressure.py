"""Clients that stop reading, against a real server on 127.0.0.1: memory stays bounded.

The attackers are raw sockets with a 4 KiB receive buffer speaking WebSocket through websockets'
sans-I/O client, so they can flood the server and never read a byte of its answers.
"""

from __future__ import annotations

import asyncio
import random
import socket
from urllib.parse import urlsplit

import pytest
from test_server import TIMEOUT, hello, receive, send
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from crdtsync.protocol.signaling import (
    Challenge,
    Hello,
    Join,
    Joined,
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

CUT_OFF = (ConnectionResetError, BrokenPipeError)
PAYLOAD = 60 * 1024  # under the 64 KiB message limit with the envelope


class RawClient:
    """A native-protocol client on a non-blocking socket with a tiny receive buffer."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.protocol = protocol
        self.peer_id = ""
        self.room = ""
        self._events: list[object] = []

    @classmethod
    async def login(cls, url: str) -> RawClient:
        """Log in, join a room of its own (``room``), and return."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        parts = urlsplit(url)
        await loop.sock_connect(sock, (parts.hostname, parts.port))
        client = cls(sock, ClientProtocol(parse_uri(url), max_size=None))
        client.protocol.send_request(client.protocol.connect())
        await client._flush()
        response = await client._next_event()
        assert isinstance(response, Response)
        assert response.status_code == 101
        identity = Identity()
        await client.send(Hello(identity.public_key))
        challenge = await client.receive()
        assert isinstance(challenge, Challenge)
        await client.send(Prove(identity.prove(normalise_origin(url), challenge.nonce)))
        welcome = await client.receive()
        assert isinstance(welcome, Welcome)
        client.peer_id = welcome.peer_id
        client.room = f"own-{welcome.peer_id}"
        await client.send(Join(client.room))
        assert await client.receive() == Joined(client.room, frozenset())
        return client

    async def send(self, message: SignalingMessage) -> None:
        self.protocol.send_binary(encode_signaling(message))
        await self._flush()

    async def receive(self) -> SignalingMessage:
        event = await self._next_event()
        assert isinstance(event, Frame)
        assert event.opcode is Opcode.BINARY
        return decode_signaling(event.data, max_size=1 << 20)

    async def _next_event(self) -> Response | Frame:
        loop = asyncio.get_running_loop()
        while not self._events:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), TIMEOUT)
            assert data, "the server closed the connection"
            self.protocol.receive_data(data)
            self._events += self.protocol.events_received()
        event = self._events.pop(0)
        assert isinstance(event, Response | Frame)
        return event

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        for data in self.protocol.data_to_send():
            await asyncio.wait_for(loop.sock_sendall(self.sock, data), TIMEOUT)

    async def is_reset(self) -> bool:
        """True once the server has dropped the TCP connection (reset or end of stream)."""
        loop = asyncio.get_running_loop()
        try:
            while await asyncio.wait_for(loop.sock_recv(self.sock, 65536), TIMEOUT):
                pass  # what the server sent before it gave up; a few KiB at most
        except CUT_OFF:
            return True
        return True  # end of stream

    def close(self) -> None:
        self.sock.close()


async def flood_until_cut_off(
    attackers: list[RawClient], payload: bytes, max_messages: int, between: object = None
) -> int:
    """Each attacker signals itself ``payload`` until the server drops it; the rounds it took."""
    alive = list(attackers)
    for rounds in range(1, max_messages + 1):
        for attacker in list(alive):
            try:
                await attacker.send(Signal(attacker.room, attacker.peer_id, payload))
            except CUT_OFF:
                alive.remove(attacker)
        if callable(between):
            await between(rounds)
        if not alive:
            return rounds
    pytest.fail(f"{len(alive)} attackers still connected after {max_messages} messages each")


async def test_clients_that_never_read_are_dropped_and_their_queues_stay_bounded() -> None:
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    limit = 256 * 1024
    settings = SignalingSettings(
        messages_per_second=10_000,
        burst=10_000,
        bytes_per_second=1e12,  # the queues are under test here, not the byte rate
        byte_burst=1 << 40,
        send_queue_bytes=limit,
        # Relays stop at the limit (target-busy); a client that never reads is dropped by
        # the send deadline, not by what others queue for it.
        send_timeout=0.5,
        close_timeout=0.5,
    )
    async with SignalingServer(settings=settings) as server:
        honest, _ = await hello(server.url)
        await send(honest, Join("honest"))
        await receive(honest)
        attackers = []
        for _ in range(6):
            attackers.append(await RawClient.login(server.url))
        peak = 0
        pongs = 0

        async def between(rounds: int) -> None:
            nonlocal peak, pongs
            peak = max(peak, server.queued_bytes)
            if rounds % 10 == 0:  # an honest client in another room is still served
                await send(honest, Ping(rounds))
                assert await receive(honest) == Pong(rounds)
                pongs += 1

        try:
            rounds = await flood_until_cut_off(
                attackers, rng.randbytes(PAYLOAD), max_messages=2000, between=between
            )
            await server.wait_for_connection_count(1, timeout=TIMEOUT)
            print(f"cut off after {rounds} messages each; peak queued {peak} bytes")
            assert peak <= 6 * 2 * limit  # relays to each up to limit, then its own errors
            assert server.queued_bytes < limit
            assert all([await attacker.is_reset() for attacker in attackers])
            await send(honest, Ping(1))
            assert await receive(honest) == Pong(1)
            assert pongs == rounds // 10
        finally:
            for attacker in attackers:
                attacker.close()
        await honest.close()


@pytest.mark.parametrize("cause", ["idle", "send-timeout"])
async def test_a_reader_that_stalls_is_aborted_when_its_connection_must_end(cause: str) -> None:
    """The queue never fills: the idle timeout or the send timeout must end it, RST included."""
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    settings = SignalingSettings(
        messages_per_second=10_000,
        burst=10_000,
        bytes_per_second=1e12,
        byte_burst=1 << 40,
        send_queue_bytes=64 << 20,  # never reached
        idle_timeout=1.0 if cause == "idle" else 600.0,
        send_timeout=600.0 if cause == "idle" else 0.5,
        close_timeout=0.5,
    )
    async with SignalingServer(settings=settings) as server:
        attacker = await RawClient.login(server.url)
        signal = Signal(attacker.room, attacker.peer_id, rng.randbytes(PAYLOAD))
        try:
            # Fill the kernel's buffers both ways until the writer is stalled for sure, then go
            # quiet: the idle timeout, or the send timeout, must end the connection all the same.
            while server.queued_bytes < 4 << 20:
                await attacker.send(signal)
            await server.wait_for_connection_count(0, timeout=TIMEOUT)
            assert await attacker.is_reset()
            assert server.queued_bytes == 0
        finally:
            attacker.close()
