"""The signaling server: a thin websockets adapter around the ``Router`` core.

Each connection gets a writer task fed by a bounded queue, so one slow client never stalls
the others; the router decides everything else. ``port=0`` picks a free port; ``url`` is
the real address. Keepalive and idle timeouts are the router's (clients send ``ping``), so
websockets' own pings are off, and so is compression (it costs ~35% on small frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from types import TracebackType
from typing import Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from crdtsync.errors import SignalingError
from crdtsync.signaling.router import Router, SignalingSettings

__all__ = ["SignalingServer"]

logger = logging.getLogger("crdtsync.signaling")

# Messages queued for one client before it counts as too slow and is dropped.
SEND_QUEUE_LIMIT = 1024

_Item = bytes | tuple[int, str]  # a message, or a close code and reason


class SignalingServer:
    """``async with SignalingServer(host="127.0.0.1", port=0) as server: server.url``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        settings: SignalingSettings | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.router = Router(settings)
        self._ssl = ssl
        self._server: Server | None = None
        self._queues: dict[int, asyncio.Queue[_Item]] = {}
        self._timer: asyncio.TimerHandle | None = None

    @property
    def url(self) -> str:
        """The address clients connect to (``ws://`` or ``wss://``), with the real port."""
        if self._server is None:
            raise SignalingError("the signaling server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"{'wss' if self._ssl else 'ws'}://{host}:{port}"

    async def start(self) -> None:
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                ssl=self._ssl,
                compression=None,
                max_size=self.router.settings.max_message_size,
                ping_interval=None,
            )
        except OSError as exc:
            raise SignalingError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        logger.info("= signaling server listening on %s", self.url)

    async def aclose(self) -> None:
        """Stop accepting, close every connection, wait for their handlers; idempotent."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _handle(self, connection: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        conn = self.router.connect(loop.time())
        queue: asyncio.Queue[_Item] = asyncio.Queue(SEND_QUEUE_LIMIT)
        self._queues[conn] = queue
        writer = asyncio.create_task(self._write(connection, queue))
        self._dispatch()
        try:
            async for message in connection:
                data = message.encode() if isinstance(message, str) else message
                self.router.receive(conn, data, loop.time())
                self._dispatch()
                if writer.done():
                    break
        except ConnectionClosed:
            pass
        finally:
            self._queues.pop(conn, None)
            self.router.disconnect(conn)
            self._dispatch()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer

    async def _write(self, connection: ServerConnection, queue: asyncio.Queue[_Item]) -> None:
        while True:
            item = await queue.get()
            if isinstance(item, tuple):
                await connection.close(*item)
                return
            await connection.send(item)

    def _dispatch(self) -> None:
        """Hand the router's output to the writers; re-arm the idle timer."""
        for conn, data in self.router.take_outgoing():
            self._enqueue(conn, data)
        for conn, code, reason in self.router.take_closing():
            self._enqueue(conn, (code, reason))
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.router.get_timer()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _enqueue(self, conn: int, item: _Item) -> None:
        queue = self._queues.get(conn)
        if queue is None:
            return
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            # Too slow to keep up: drop what is queued, say why, and let it go.
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait((1008, "too slow: send queue full"))
            self.router.disconnect(conn)
            self._queues.pop(conn, None)

    def _on_timer(self) -> None:
        self._timer = None
        self.router.handle_timer(asyncio.get_running_loop().time())
        self._dispatch()
