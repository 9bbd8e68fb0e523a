"""The signaling server: a thin websockets adapter around two cores on one port and URL.

A connection whose first frame is binary speaks the native protocol (``Router``); one whose
first frame is text speaks y-webrtc's (``TopicRouter``): the two never see each other's rooms.
Each connection gets a writer task fed by an outbox bounded in bytes, so one slow client never
stalls the others, and every send and close has a deadline after which the TCP connection is
aborted: a client that stops reading cannot pin memory. Connections are admitted per address
and overall (``limits.Admission``) as the TCP connection is accepted, before a byte is read:
over a cap, an HTTP 503 is written and the socket closed at once. The cores decide the rest.
``port=0`` picks a free port; ``url`` is the real address. Keepalive and idle timeouts are the
cores' (clients send ``ping``), so websockets' pings are off, and so is compression (~35%).
Nothing a remote sends makes a log line longer than a few hundred characters. A plain GET
of ``/healthz`` or ``/metrics`` is answered on the same port (``operations.py``); ``drain()``
sends every client away with 1001 before stopping. With ``redis=URL`` several servers share
rooms (``backplane.py``): the cores' cluster commands go to the backplane, and what it hears
comes back into the cores like a client's input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as ssl_module
import struct
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from crdtsync.errors import ConfigError, SignalingError, SyncTimeoutError
from crdtsync.signaling.cluster import ClusterCommand
from crdtsync.signaling.identity import normalise_origin
from crdtsync.signaling.limits import Admission, address_key, cut, frame_size
from crdtsync.signaling.log_format import log_fields
from crdtsync.signaling.operations import ServerMetrics
from crdtsync.signaling.router import Router, SignalingSettings
from crdtsync.signaling.topics import TopicRouter
from crdtsync.signaling.turn import TurnSettings

if TYPE_CHECKING:  # redis-py is an extra: imported only when a server is given a Redis URL
    from crdtsync.signaling.backplane import BackplaneSettings, BackplaneState, RedisBackplane

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

__all__ = ["DRAIN_TIMEOUT", "SignalingServer"]

logger = logging.getLogger("crdtsync.signaling")

# How long a drain waits for its clients to go: closes have close_timeout (2 s) each, so
# with the process's own start-up and exit a SIGTERM ends within 5 s.
DRAIN_TIMEOUT = 3.0


class _Core(Protocol):
    """What the adapter needs of a signaling core (``Router``, ``TopicRouter``)."""

    def connect(
        self, now: float, *, path: str = ..., address: str = ..., origin: str | None = ...
    ) -> int: ...
    def receive(self, conn: int, data: bytes | str, now: float) -> None: ...
    def sent(self, conn: int, size: int) -> None: ...
    def disconnect(self, conn: int) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def take_outgoing(self) -> Sequence[tuple[int, bytes | str]]: ...
    def take_closing(self) -> Sequence[tuple[int, int, str]]: ...
    def take_commands(self) -> Sequence[ClusterCommand]: ...


class _Arrival:
    """The frame being fed to a core: whose connection it came from, and when. What the core
    makes meanwhile for other connections is relayed; each such frame carries that time,
    so the writer can measure the relay latency."""

    def __init__(self) -> None:
        self.source: _Outbox | None = None
        self.at = 0.0

    def of(self, source: _Outbox, at: float) -> Self:
        """``with arrival.of(outbox, now):`` around feeding and dispatching one frame (a
        plain class, not contextlib's: this runs for every frame)."""
        self.source, self.at = source, at
        return self

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        self.source = None

    def stamp(self, outbox: _Outbox) -> float | None:
        """When the frame being handled arrived, if ``outbox`` is another connection's."""
        return self.at if self.source is not None and self.source is not outbox else None


class _Outbox:
    """One connection's frames waiting for its writer, counted in bytes; then a close."""

    def __init__(self, limit: int, arrival: _Arrival) -> None:
        self.limit = limit
        self.size = 0
        self.closing: tuple[int, str] | None = None
        # The deadline of the send in progress, pulled in when a close is decided.
        self.sending: asyncio.Timeout | None = None
        # Tells the core what went out, once the connection's core is known.
        self.on_sent: Callable[[int], None] | None = None
        # Each frame, with the time the frame it relays arrived (None: not a relay).
        self._frames: deque[tuple[bytes | str, float | None]] = deque()
        self._arrival = arrival
        self._ready = asyncio.Event()

    def put(self, frame: bytes | str) -> bool:
        """Queue ``frame``; False when that would pass the limit (the client is too slow)."""
        if self.closing is not None:
            return True
        size = frame_size(frame)
        if self.size + size > self.limit:
            return False
        self._frames.append((frame, self._arrival.stamp(self)))
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

    async def get(self) -> tuple[bytes | str, float | None] | None:
        """The next frame and its relayed frame's arrival, or None once the connection is to
        be closed."""
        while not self._frames and self.closing is None:
            self._ready.clear()
            await self._ready.wait()
        if self.closing is not None:
            return None
        queued = self._frames.popleft()
        self.size -= frame_size(queued[0])
        return queued


# websockets' lines for every connection, refused ones included: the server logs refusals
# once per address per interval, and peers' logins and departures itself.
_PER_CONNECTION = ("connection open", "connection closed", "connection rejected", "HTTP response")


class _QuietLibraryLog(logging.Filter):
    """websockets' own log lines, made safe from remote input: one short line, no traceback
    (a bad handshake's exception quotes its headers), and no line per connection unless
    debugging."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(_PER_CONNECTION) and record.levelno <= logging.INFO:
            return _library_logger.isEnabledFor(logging.DEBUG)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message = f"{message}: {type(exc).__name__}: {exc}"
        record.msg, record.args = cut(message, 300), ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_library_logger = logging.getLogger("crdtsync.signaling.websockets")
_library_logger.addFilter(_QuietLibraryLog())


# Written before the request is read (a server may answer early and close, RFC 9112 9.6).
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n"
)


def _fd_budget(wanted: int) -> int:
    """``wanted`` connections, or fewer when the process may not open that many sockets."""
    if resource is None:
        return wanted
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    # Keep a margin for listening sockets, logs, a store, and the 503s themselves.
    budget = max(1, min(wanted, soft - 64))
    if budget < wanted:
        logger.info("= RLIMIT_NOFILE is %d: at most %d connections, not %d", soft, budget, wanted)
    return budget


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
        redis: str | None = None,
        backplane: BackplaneSettings | None = None,
        turn: TurnSettings | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.settings = settings or SignalingSettings()
        # With ``turn``, each native peer gets TURN credentials once it proved its identity.
        self.router = Router(self.settings, clustered=redis is not None, turn=turn)
        self.topics = TopicRouter(self.settings, clustered=redis is not None)
        self._cores: tuple[_Core, ...] = (self.router, self.topics)
        self._ssl = ssl
        self._server: Server | None = None
        self._outboxes: dict[tuple[_Core, int], _Outbox] = {}
        self._open: set[_Outbox] = set()  # every connection's, before its core is known too
        self.admission = Admission(self.settings)
        self._addresses: dict[ServerConnection, str] = {}  # admitted, by address_key
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._connections_changed = asyncio.Event()  # a handler ended, a socket closed
        self._handled = asyncio.Event()  # the cores' output was dispatched
        self._arrival = _Arrival()
        # /healthz and /metrics; the backplane reports Redis there too.
        self.metrics = ServerMetrics(
            lambda: len(self._open), {"crdtsync": self.router, "y-webrtc": self.topics}
        )
        # A bad URL, or no redis-py, fails here, before anything listens.
        self.backplane = None if redis is None else self._backplane(redis, backplane)

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
        """Connections whose handler still runs, or whose socket is still open (for metrics
        and tests): what counts against ``max_connections``."""
        return max(len(self._open), self.admission.count)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting in every connection's outbox (for metrics and tests)."""
        return sum(outbox.size for outbox in self._open)

    async def wait_for_connection_count(self, count: int, *, timeout: float) -> None:
        """Until at most ``count`` connections remain (a drain, a test); SyncTimeoutError."""
        try:
            async with asyncio.timeout(timeout):
                while self.connection_count > count:
                    self._connections_changed.clear()
                    await self._connections_changed.wait()
        except TimeoutError as exc:
            raise SyncTimeoutError(
                f"{self.connection_count} connections still open after {timeout:g} s, not {count}"
            ) from exc

    async def wait_until(self, condition: Callable[[], bool], *, timeout: float) -> None:
        """Until ``condition()`` holds, checked whenever the cores have handled something (a
        client's frame, a timer, the backplane); SyncTimeoutError after ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    self._handled.clear()
                    await self._handled.wait()
        except TimeoutError as exc:
            raise SyncTimeoutError(f"not so within {timeout:g} s") from exc

    async def start(self) -> None:
        self.admission = Admission(
            self.settings, max_connections=_fd_budget(self.settings.max_connections)
        )
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
                # The HTTP (and TLS) handshake is part of logging in.
                open_timeout=self.settings.login_timeout,
                create_connection=self._connection_class(),
                logger=_library_logger,
                process_request=self.metrics.answer,  # /healthz, /metrics; draining: 503
            )
        except OSError as exc:
            raise SignalingError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        if self.backplane is not None:
            await self.backplane.start()
        logger.info("= signaling server listening on %s", self.url, extra=log_fields("listening"))
        self.metrics.status = "ok"

    def _backplane(self, url: str, settings: BackplaneSettings | None) -> RedisBackplane:
        try:
            from crdtsync.signaling.backplane import RedisBackplane
        except ImportError as exc:
            raise ConfigError(
                f"redis= needs redis-py: pip install 'crdtsync[redis]' ({exc})"
            ) from exc
        try:
            return RedisBackplane(
                url,
                native=self.router,
                topics=self.topics,
                on_change=self._dispatch,
                settings=settings,
                on_error=self.metrics.redis_errors.inc,
                on_state=self._redis_state_changed,
            )
        except ValueError as exc:  # redis-py's word for a URL it cannot read
            raise ConfigError(f"bad Redis URL: {exc}") from exc

    def _redis_state_changed(self, state: BackplaneState) -> None:
        self.metrics.redis_state = state

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
        if self.backplane is not None:
            await self.backplane.aclose()

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Go away gracefully, then ``aclose()``: refuse new WebSocket upgrades (503, and
        ``/healthz`` answers 503 "draining"), close every client with 1001 (going away) so
        it moves to another server, and wait up to ``timeout`` for them to go. ``crdtsync
        signal`` runs this on SIGTERM."""
        self.metrics.status = "draining"
        logger.info(
            "= draining: closing %d connections with 1001",
            len(self._open),
            extra=log_fields("draining", code=1001),
        )
        for outbox in list(self._open):
            outbox.close(1001, "server going away: connect to another")
        try:
            await self.wait_for_connection_count(0, timeout=timeout)
        except SyncTimeoutError as exc:
            logger.warning("! drain: %s; stopping anyway", exc, extra=log_fields("drain-late"))
        else:
            logger.info("= drained", extra=log_fields("drained"))
        await self.aclose()

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

    def _connection_class(self) -> type[ServerConnection]:
        """websockets' connection, admitted (or refused) by us the moment TCP accepts it."""
        server = self

        class _AdmittedConnection(ServerConnection):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                server._admit(self, transport)

        return _AdmittedConnection

    def _admit(self, connection: ServerConnection, transport: asyncio.BaseTransport) -> None:
        """Count the connection against its address's and the server's caps; over one, write
        a 503 and close before reading anything, so a refused socket is held no time at all."""
        peer = transport.get_extra_info("peername")
        address = address_key(str(peer[0]) if isinstance(peer, tuple) and peer else "")
        refusal = self.admission.admit(address)
        if refusal is not None:
            code, reason = refusal
            self.metrics.refusals[code] += 1
            if self.admission.should_log(address if code == "address-full" else "*", self._now()):
                logger.warning(
                    "! refusing connections (%s) from %s: %s; logged once per %g s",
                    code,
                    address,
                    reason,
                    self.settings.refusal_log_interval,
                    extra=log_fields("refusing-connections", code=code),
                )
            assert isinstance(transport, asyncio.WriteTransport)
            body = f"{reason}\n".encode()
            transport.write(_REFUSED % len(body) + body)
            transport.close()  # websockets sees the connection lost before a request: quiet
            return
        self._addresses[connection] = address

        def release(_: object) -> None:
            self._addresses.pop(connection, None)
            self.admission.release(address)
            self._connections_changed.set()

        connection.connection_lost_waiter.add_done_callback(release)

    def _origin_of(self, connection: ServerConnection) -> str | None:
        """The origin the client dialed, as its Host header names it (see settings.origins)."""
        host = connection.request.headers.get("Host") if connection.request else None
        if not host:
            return None
        try:
            return normalise_origin(f"{'wss' if self._ssl else 'ws'}://{host}")
        except ConfigError:
            return None

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _handle(self, connection: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        # Twice what the cores let others relay to it: the other half is for the server's
        # own small messages; only a client that stops reading gets here.
        outbox = _Outbox(2 * self.settings.send_queue_bytes, self._arrival)
        self._open.add(outbox)
        writer = asyncio.create_task(self._write(connection, outbox))
        core: _Core | None = None
        conn = 0
        try:
            if self._closed or self.metrics.status == "draining":
                outbox.close(1001, "server shutting down")
            # Until its first frame a connection belongs to no core, so this wait is bounded
            # here, like websockets' open_timeout: it is the start of logging in.
            async with asyncio.timeout(self.settings.login_timeout):
                message = await connection.recv()
            # The only choice made here: which protocol the connection speaks.
            core = self.topics if isinstance(message, str) else self.router
            conn = core.connect(
                loop.time(),
                path=connection.request.path if connection.request else "/",
                address=self._addresses.get(connection, ""),
                origin=self._origin_of(connection),
            )
            self._outboxes[core, conn] = outbox
            outbox.on_sent = lambda size, core=core, conn=conn: core.sent(conn, size)
            while True:
                with self._arrival.of(outbox, loop.time()):
                    core.receive(conn, message, loop.time())
                    self._dispatch()
                message = await connection.recv()
        except TimeoutError:
            outbox.close(1008, f"no message within {self.settings.login_timeout:g} s")
        except ConnectionClosed:
            pass
        except Exception as exc:  # a core bug; never a traceback quoting remote input
            logger.error(
                "! signaling core failed: %s",
                cut(f"{type(exc).__name__}: {exc}"),
                extra=log_fields("core-failed", code=1011),
            )
            outbox.close(1011, "internal error")
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
            self._connections_changed.set()

    async def _write(self, connection: ServerConnection, outbox: _Outbox) -> None:
        """Send each frame within ``send_timeout``, then close within ``close_timeout``."""
        settings = self.settings
        try:
            while (queued := await outbox.get()) is not None:
                frame, arrived = queued
                outbox.sending = asyncio.timeout(settings.send_timeout)
                try:
                    async with outbox.sending:
                        await connection.send(frame)
                    if arrived is not None:
                        self.metrics.relay_latency.observe(self._now() - arrived)
                    if outbox.on_sent is not None:
                        outbox.on_sent(frame_size(frame))
                except TimeoutError:
                    if outbox.closing is None:
                        logger.info(
                            "! a send took over %g s: aborted",
                            settings.send_timeout,
                            extra=log_fields("send-timeout"),
                        )
                        _abort(connection)
                        return
                finally:
                    outbox.sending = None
            assert outbox.closing is not None
            try:
                async with asyncio.timeout(settings.close_timeout):
                    await connection.close(*outbox.closing)
            except TimeoutError:
                logger.info(
                    "! no close within %g s: aborted",
                    settings.close_timeout,
                    extra=log_fields("close-timeout", code=outbox.closing[0]),
                )
                _abort(connection)
        except ConnectionClosed:
            pass

    def _dispatch(self) -> None:
        """Hand the cores' output to the outboxes; re-arm the idle timer."""
        self._handled.set()
        busy = True
        while busy:  # dropping a slow client makes more output (peer-left to its rooms)
            busy = False
            for core in self._cores:
                for conn, frame in core.take_outgoing():
                    outbox = self._outboxes.get((core, conn))
                    if outbox is not None and not outbox.put(frame):
                        # The cores stop relaying at half this: the client stopped reading.
                        logger.info("! too slow: over %d bytes queued, dropped", outbox.limit)
                        outbox.close(1008, "too slow: send queue full")
                        del self._outboxes[core, conn]
                        core.disconnect(conn)
                        busy = True
                for conn, code, reason in core.take_closing():
                    outbox = self._outboxes.pop((core, conn), None)
                    if outbox is not None:
                        outbox.close(code, reason)
                commands = core.take_commands()
                if commands and self.backplane is not None:
                    self.backplane.submit("n" if core is self.router else "y", list(commands))
        deadlines = [d for core in self._cores if (d := core.get_timer()) is not None]
        due = min(deadlines) if deadlines and not self._closed else None
        if self._timer is not None:
            if due is not None and self._timer.when() <= due:
                return  # it fires early, finds nothing due and re-arms: cheaper than per frame
            self._timer.cancel()
            self._timer = None
        if due is not None:
            self._timer = asyncio.get_running_loop().call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        # asyncio may run a handle up to its clock resolution early: never before its time.
        when = self._timer.when() if self._timer is not None else 0.0
        self._timer = None
        now = max(asyncio.get_running_loop().time(), when)
        for core in self._cores:
            core.handle_timer(now)
        self._dispatch()
