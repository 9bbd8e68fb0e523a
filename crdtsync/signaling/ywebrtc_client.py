"""A reconnecting client of y-webrtc signaling: JSON topics over one WebSocket.

Speaks what y-webrtc's own clients speak (lib0 ``WebsocketClient`` and y-webrtc
``SignalingConn``), so it works against any y-webrtc signaling server, ours or y-webrtc's
``bin/server.js``: on every (re)connect it subscribes to its topics and tells the listener,
which announces; it pings when the server has been quiet for 15 s and gives the connection
up after 30 s without a message, as lib0 does. Given several servers, it moves to the next
when one cannot be reached or goes away (``servers.py``). Open WebRTC links never need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl as ssl_module
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from crdtsync.errors import ProtocolError, SignalingError
from crdtsync.protocol.ywebrtc_signaling import (
    Error,
    Ping,
    Publish,
    Subscribe,
    TopicMessage,
    Unsubscribe,
    decode_topic_message,
    encode_topic_message,
)
from crdtsync.signaling.servers import CONNECTION_LOST, MAX_MESSAGE_SIZE, ServerList, dial

__all__ = ["TopicListener", "YWebrtcSignalingClient", "with_token"]

logger = logging.getLogger("crdtsync.signaling")


class TopicListener(Protocol):
    def signaling_connected(self) -> None:
        """Subscribed again after a (re)connect: time to announce."""

    def publish_received(self, topic: str, data: object) -> None:
        """Someone published ``data`` to ``topic``."""


def with_token(url: str, token: str | None) -> str:
    """``url`` with a ``token`` query parameter: how join tokens reach our server, since a
    y-webrtc client can only pass the URL."""
    if token is None:
        return url
    return f"{url}{'&' if '?' in url else '?'}token={quote(token, safe='')}"


class YWebrtcSignalingClient:
    """One reconnecting connection to one of some y-webrtc signaling servers, for some topics.

    ``token`` rides in each URL's query string (``with_token``); ``name`` (the peer's id)
    heads its log lines."""

    def __init__(
        self,
        servers: str | Sequence[str],
        listener: TopicListener,
        *,
        topics: tuple[str, ...],
        token: str | None = None,
        name: str = "y-webrtc client",
        ssl: ssl_module.SSLContext | None = None,
        ping_interval: float = 15.0,
        dead_after: float = 30.0,
        open_timeout: float = 10.0,
        reconnect_base: float = 0.2,
        reconnect_cap: float = 2.5,
        rng: random.Random | None = None,
    ) -> None:
        self.servers = ServerList(
            servers,
            tls=ssl is not None,
            reconnect_base=reconnect_base,
            reconnect_cap=reconnect_cap,  # lib0 retries within 2.5 s at most
            rng=rng or random.Random(),
        )
        self._token = token
        self.name = name
        self._tls: dict[str, Any] = {} if ssl is None else {"ssl": ssl}
        self.listener = listener
        self.topics = topics
        self.ping_interval = ping_interval
        self.dead_after = dead_after
        self.open_timeout = open_timeout
        self._connection: ClientConnection | None = None
        self._connection_changed = asyncio.Event()
        # Told True or False when the server becomes reachable or is lost (host events).
        self.on_connection_changed: Callable[[bool], None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The server in use now (or the one dialed next)."""
        return self.servers.current

    @property
    def connected(self) -> bool:
        return self._connection is not None

    async def start(self) -> None:
        """Start connecting in the background (``wait_connected`` waits for it)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"y-webrtc signaling {self.name}")

    async def wait_connected(self, connected: bool = True, *, timeout: float) -> None:
        """Wait until subscribed (or, with False, disconnected); SignalingError on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while self.connected != connected:
                    self._connection_changed.clear()
                    await self._connection_changed.wait()
        except TimeoutError as exc:
            state = "connected to" if connected else "disconnected from"
            servers = ", ".join(self.servers.urls)
            raise SignalingError(f"{self.name} not {state} {servers} within {timeout} s") from exc

    async def publish(self, topic: str, data: object) -> bool:
        """Publish to ``topic``; False while disconnected (the payload is lost, as in y-webrtc)."""
        connection = self._connection
        if connection is None:
            return False
        try:
            async with asyncio.timeout(self.open_timeout):
                await connection.send(encode_topic_message(Publish(topic, data)))
        except (ConnectionClosed, TimeoutError):
            return False
        return True

    async def aclose(self) -> None:
        """Unsubscribe and leave the server with a normal close; idempotent."""
        task, self._task = self._task, None
        connection = self._connection
        if task is not None:
            task.cancel()  # first: a closed connection must not be taken for a lost one
        if connection is not None:
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                async with asyncio.timeout(self.open_timeout):
                    await connection.send(encode_topic_message(Unsubscribe(self.topics)))
                    await connection.close()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- internals ------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            url = with_token(self.url, self._token)
            try:
                async with dial(url, open_timeout=self.open_timeout, tls=self._tls) as connection:
                    await connection.send(encode_topic_message(Subscribe(self.topics)))
                    self.servers.connected(loop.time())
                    self._set_connection(connection)
                    logger.info("= %s connected to %s (y-webrtc)", self.name, self.url)
                    self.listener.signaling_connected()
                    await self._serve(connection)
            except CONNECTION_LOST as exc:
                delay = self.servers.ended(self.name, exc, loop.time())
            finally:
                self._set_connection(None)
            await asyncio.sleep(delay)

    async def _serve(self, connection: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        heard_at = loop.time()
        while True:
            try:
                async with asyncio.timeout(self.ping_interval):
                    data = await connection.recv()
            except TimeoutError:
                if loop.time() - heard_at >= self.dead_after:
                    raise
                await connection.send(encode_topic_message(Ping()))
                continue
            heard_at = loop.time()
            try:
                message = decode_topic_message(data, max_size=MAX_MESSAGE_SIZE)
            except ProtocolError as exc:
                logger.warning("! %s sent a frame we cannot read: %.200s", self.url, exc)
                continue
            self._dispatch(message)

    def _dispatch(self, message: TopicMessage) -> None:
        if isinstance(message, Publish):
            if message.topic in self.topics:
                self.listener.publish_received(message.topic, message.data)
        elif isinstance(message, Error):
            logger.warning("! %s says %s: %.200s", self.url, message.code, message.message)

    def _set_connection(self, connection: ClientConnection | None) -> None:
        changed = (connection is None) != (self._connection is None)
        self._connection = connection
        self._connection_changed.set()
        if changed and self.on_connection_changed is not None:
            self.on_connection_changed(connection is not None)
