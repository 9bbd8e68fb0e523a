"""Pieces shared by the transport tests that put themselves between peers and the server.

``real_offer`` gives a genuine SDP offer to flood, replay or forge; ``TcpRelay`` stands in
front of a real signaling server as its wire, and its subclasses (in the test modules) keep
or rewrite what the server sends. Test modules import this by name: under pytest's default
import mode their folder is on ``sys.path``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Self

from aiortc import RTCPeerConnection

from crdtsync.transport.ice_hosts import host_addresses
from crdtsync.transport.webrtc import connect_tasks_ended

LOOPBACK = ("127.0.0.1",)
CHUNK = 65536


async def real_offer() -> str:
    """A valid offer, as a real aiortc peer makes it, on loopback."""
    connection = RTCPeerConnection()
    try:
        connection.createDataChannel("crdtsync", ordered=True)
        with host_addresses(LOOPBACK):
            await connection.setLocalDescription(await connection.createOffer())
        return str(connection.localDescription.sdp)
    finally:
        await connection.close()
        await connect_tasks_ended()


async def pump(
    source: asyncio.StreamReader,
    sink: asyncio.StreamWriter,
    seen: Callable[[bytes], object] | None = None,
) -> None:
    """Copy ``source`` to ``sink`` as it comes (each chunk shown to ``seen`` first), then
    close ``sink``: the end of one direction ends it on the other side too."""
    while data := await source.read(CHUNK):
        if seen is not None:
            seen(data)
        sink.write(data)
        await sink.drain()
    sink.close()


class TcpRelay:
    """A TCP relay on 127.0.0.1 to the signaling server at ``target_port``, one upstream
    connection per client. What clients send passes as it is; what the server sends goes
    through ``_from_server``, which subclasses override (here it passes as it is too)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        try:
            await asyncio.gather(
                pump(reader, upstream_writer), self._from_server(upstream_reader, writer)
            )
        finally:
            writer.close()
            upstream_writer.close()

    async def _from_server(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """The server-to-client direction: must close ``sink`` when ``source`` ends."""
        await pump(source, sink)
