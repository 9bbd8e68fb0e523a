"""The signaling server: a thin websockets adapter around two cores on one port and URL.

A connection whose first frame is binary speaks the native protocol (``Router``); one whose
first frame is text speaks y-webrtc's (``TopicRouter``): the two never see each other's rooms.
Each connection gets a writer task fed by an outbox bounded in bytes, so one slow client never
stalls the others, and every send and close has a deadline after which the TCP connection is
aborted: a client that stops reading cannot pin memory. The cores decide everything else.
``port=0`` picks a free port; ``url`` is the real address. Keepalive and idle timeouts are the
cores' (clients send ``ping``), so websockets' pings are off, and so is compression (~35%).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as ssl_module
import struct
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from crdtsync.errors import SignalingError, SyncTimeoutError
from crdtsync.signaling.router import Router, SignalingSettings
from crdtsync.signaling.topics import TopicRouter

__all__ = ["SignalingServer"]

logger = logging.getLogger("crdtsync.signaling")


class _Core(Protocol):
    """What the adapter needs of a signaling core (``Router``, ``TopicRouter``)."""

    def connect(self, now: float, *, path: str = ...) -> int: ...
    def receive(self, conn: int, data: bytes | str, now: float) -> None: ...
    def disconnect(self, conn: int) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def take_outgoing(self) -> Sequence[tuple[int, bytes | str]]: ...
    def take_closing(self) -> Sequence[tuple[int, int, str]]: ...


class _Outbox:
    """One connection's frames waiting for its writer, counted in bytes; then a close."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.closing: tuple[int, str] | None = None
        # The deadline of the send in progress, pulled in when a close is decided.
        self.sending: asyncio.Timeout | None = None
        self._frames: deque[bytes | str] = deque()
        self._ready = asyncio.Event()

    def put(self, frame: bytes | str) -> bool:
        """Queue ``frame``; False when that would pass the limit (the client is too slow)."""
        if self.closing is not None:
            return True
        size = _size_of(frame)
        if self.size + size > self.limit:
            return False
        self._frames.append(frame)
        self.size += size
        self._ready.set()
        return True

    def close(self, code: int, reason: str) -> None:
        """Drop what is queued, close next; a send stuck on a peer that does not read ends now."""
        if self.closing is not None:
            return
        self.closing = (code, reason)
        self._frames.clear()
        self.size = 0
        self._ready.set()
        if self.sending is not None and not self.sending.expired():
            self.sending.reschedule(asyncio.get_running_loop().time())

    async def get(self) -> bytes | str | None:
        """The next frame, or None once the connection is to be closed."""
        while not self._frames and self.closing is None:
            self._ready.clear()
            await self._ready.wait()
        if self.closing is not None:
            return None
        frame = self._frames.popleft()
        self.size -= _size_of(frame)
        return frame


def _size_of(frame: bytes | str) -> int:
    # An ASCII str costs a byte a character; any other up to four (CPython's widest form).
    return len(frame) if isinstance(frame, bytes) or frame.isascii() else 4 * len(frame)


def _abort(connection: ServerConnection) -> None:
    """Drop the TCP connection at once: RST, no lingering kernel buffers for a dead reader."""
    transport = connection.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


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
        self.settings = settings or SignalingSettings()
        self.router = Router(self.settings)
        self.topics = TopicRouter(self.settings)
        self._cores: tuple[_Core, ...] = (self.router, self.topics)
        self._ssl = ssl
        self._server: Server | None = None
        self._outboxes: dict[tuple[_Core, int], _Outbox] = {}
        self._open: set[_Outbox] = set()  # every connection's, before its core is known too
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._handlers_changed = asyncio.Condition()

    @property
    def url(self) -> str:
        """The address clients connect to (``ws://`` or ``wss://``), with the real port."""
        if self._server is None:
            raise SignalingError("the signaling server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"{'wss' if self._ssl else 'ws'}://{host}:{port}"

    @property
    def connection_count(self) -> int:
        """Connections whose handler still runs (for metrics and tests)."""
        return len(self._open)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting in every connection's outbox (for metrics and tests)."""
        return sum(outbox.size for outbox in self._open)

    async def wait_for_connection_count(self, count: int, *, timeout: float) -> None:
        """Until at most ``count`` connections remain (a drain, a test); SyncTimeoutError."""
        try:
            async with asyncio.timeout(timeout), self._handlers_changed:
                await self._handlers_changed.wait_for(lambda: len(self._open) <= count)
        except TimeoutError as exc:
            raise SyncTimeoutError(
                f"{len(self._open)} connections still open after {timeout:g} s, not {count}"
            ) from exc

    async def start(self) -> None:
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                ssl=self._ssl,
                compression=None,
                max_size=self.settings.max_message_size,
                ping_interval=None,
                close_timeout=self.settings.close_timeout,
            )
        except OSError as exc:
            raise SignalingError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        logger.info("= signaling server listening on %s", self.url)

    async def aclose(self) -> None:
        """Stop accepting, close every connection, wait for their handlers; idempotent."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._server is not None:
            # Our writers close each connection with a deadline; websockets' own close of
            # every connection would wait for ever on a peer that does not read.
            self._server.close(close_connections=False)
            for outbox in list(self._open):
                outbox.close(1001, "server shutting down")
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
        outbox = _Outbox(self.settings.send_queue_bytes)
        self._open.add(outbox)
        writer = asyncio.create_task(self._write(connection, outbox))
        core: _Core | None = None
        conn = 0
        try:
            if self._closed:
                outbox.close(1001, "server shutting down")
            # Until its first frame a connection belongs to no core, so this wait is bounded
            # here, like websockets' open_timeout.
            async with asyncio.timeout(self.settings.idle_timeout):
                message = await connection.recv()
            # The only choice made here: which protocol the connection speaks.
            core = self.topics if isinstance(message, str) else self.router
            conn = core.connect(
                loop.time(), path=connection.request.path if connection.request else "/"
            )
            self._outboxes[core, conn] = outbox
            while True:
                core.receive(conn, message, loop.time())
                self._dispatch()
                message = await connection.recv()
        except TimeoutError:
            outbox.close(1001, f"no message for {self.settings.idle_timeout:g} s")
        except ConnectionClosed:
            pass
        finally:
            if core is not None:
                self._outboxes.pop((core, conn), None)
                core.disconnect(conn)
                self._dispatch()
            if not outbox.closing:
                writer.cancel()  # the peer left: nothing more to send
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._open.discard(outbox)
            async with self._handlers_changed:
                self._handlers_changed.notify_all()

    async def _write(self, connection: ServerConnection, outbox: _Outbox) -> None:
        """Send each frame within ``send_timeout``, then close within ``close_timeout``."""
        settings = self.settings
        try:
            while (frame := await outbox.get()) is not None:
                outbox.sending = asyncio.timeout(settings.send_timeout)
                try:
                    async with outbox.sending:
                        await connection.send(frame)
                except TimeoutError:
                    if outbox.closing is None:
                        logger.info("! a send took over %g s: aborted", settings.send_timeout)
                        _abort(connection)
                        return
                finally:
                    outbox.sending = None
            assert outbox.closing is not None
            try:
                async with asyncio.timeout(settings.close_timeout):
                    await connection.close(*outbox.closing)
            except TimeoutError:
                logger.info("! no close within %g s: aborted", settings.close_timeout)
                _abort(connection)
        except ConnectionClosed:
            pass

    def _dispatch(self) -> None:
        """Hand the cores' output to the outboxes; re-arm the idle timer."""
        busy = True
        while busy:  # dropping a slow client makes more output (peer-left to its rooms)
            busy = False
            for core in self._cores:
                for conn, frame in core.take_outgoing():
                    outbox = self._outboxes.get((core, conn))
                    if outbox is not None and not outbox.put(frame):
                        limit = self.settings.send_queue_bytes
                        logger.info("! too slow: over %d bytes queued, dropped", limit)
                        outbox.close(1008, "too slow: send queue full")
                        del self._outboxes[core, conn]
                        core.disconnect(conn)
                        busy = True
                for conn, code, reason in core.take_closing():
                    outbox = self._outboxes.pop((core, conn), None)
                    if outbox is not None:
                        outbox.close(code, reason)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadlines = [d for core in self._cores if (d := core.get_timer()) is not None]
        if deadlines and not self._closed:
            self._timer = asyncio.get_running_loop().call_at(min(deadlines), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        for core in self._cores:
            core.handle_timer(now)
        self._dispatch()
