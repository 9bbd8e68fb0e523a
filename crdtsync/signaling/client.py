"""The peers' side of signaling: join rooms, learn members, exchange link-setup payloads.

It keeps itself connected: given several servers, it moves to the next when one cannot be
reached or goes away (``servers.py`` says which and when), and on each proves the same
identity (a proof naming that server) and re-joins its rooms; with one, it dials it again
with jittered backoff. Meanwhile the members it last heard of stand (open links do not need
the server). Every wait has a timeout; keepalive pings go out whenever the server has been
quiet for ``ping_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl as ssl_module
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from crdtsync.errors import ProtocolError, SignalingError
from crdtsync.protocol.signaling import (
    Challenge,
    Error,
    Hello,
    Join,
    Joined,
    PeerJoined,
    PeerLeft,
    Ping,
    Prove,
    Signal,
    SignalingMessage,
    TurnCredentials,
    Welcome,
    decode_signaling,
    encode_signaling,
)
from crdtsync.signaling.identity import Identity
from crdtsync.signaling.servers import CONNECTION_LOST, MAX_MESSAGE_SIZE, ServerList, dial

__all__ = ["SignalingClient", "SignalingListener"]

logger = logging.getLogger("crdtsync.signaling")


class SignalingListener(Protocol):
    def members_changed(self, room: str, members: frozenset[str]) -> None:
        """The other peers in ``room`` are now ``members``."""

    def signal_received(self, room: str, peer_id: str, data: bytes) -> None:
        """``peer_id`` sent a link-setup payload in ``room``."""


class SignalingClient:
    """A reconnecting connection to one of some signaling servers, for one peer identity."""

    def __init__(
        self,
        servers: str | Sequence[str],
        listener: SignalingListener,
        *,
        rooms: dict[str, str | None],
        identity: Identity | None = None,
        ping_interval: float = 15.0,
        open_timeout: float = 10.0,
        reconnect_base: float = 0.2,
        reconnect_cap: float = 5.0,
        rng: random.Random | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.servers = ServerList(
            servers,
            tls=ssl is not None,
            reconnect_base=reconnect_base,
            reconnect_cap=reconnect_cap,
            rng=rng or random.Random(),
        )
        # wss:// without a context verifies the server against the system's certificates.
        self._tls: dict[str, Any] = {} if ssl is None else {"ssl": ssl}
        self.listener = listener
        self.rooms = dict(rooms)  # room -> join token (None without)
        self.identity = identity or Identity()
        self.ping_interval = ping_interval
        self.open_timeout = open_timeout
        self._members: dict[str, frozenset[str]] = {}
        self._joined: dict[str, asyncio.Event] = {room: asyncio.Event() for room in self.rooms}
        self._connection: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: SignalingError | None = None
        self._nonce = 0
        self._connection_changed = asyncio.Event()
        # What the server handed us at the last login (fresh each login; None: no TURN).
        self.turn_credentials: TurnCredentials | None = None

        # Told True or False when the server becomes reachable or is lost (host events).
        self.on_connection_changed: Callable[[bool], None] | None = None

    @property
    def peer_id(self) -> str:
        """Our id in every room: derived from our key, so known before connecting."""
        return self.identity.peer_id

    @property
    def url(self) -> str:
        """The server in use now (or the one dialed next)."""
        return self.servers.current

    @property
    def connected(self) -> bool:
        return self._connection is not None

    async def wait_connected(self, connected: bool = True, *, timeout: float) -> None:
        """Wait until the client is (or, with False, is not) connected to the server."""
        try:
            async with asyncio.timeout(timeout):
                while self.connected != connected:
                    self._connection_changed.clear()
                    await self._connection_changed.wait()
        except TimeoutError as exc:
            state = "connected" if connected else "disconnected"
            raise SignalingError(f"{self.peer_id} not {state} within {timeout} s") from exc

    def members(self, room: str) -> frozenset[str]:
        return self._members.get(room, frozenset())

    async def start(self) -> None:
        """Start connecting in the background (``wait_joined`` waits for the first join)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"signaling {self.peer_id}")

    async def wait_joined(self, room: str, timeout: float) -> None:
        """Wait until ``room`` is joined on the current connection.

        SignalingError if that takes over ``timeout`` s, or the server refused for good.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._joined[room].wait()
        except TimeoutError as exc:
            raise SignalingError(
                f"{self.peer_id} could not join {room!r} via {', '.join(self.servers.urls)} "
                f"within {timeout} s" + (f": {self._failure}" if self._failure else "")
            ) from exc
        if self._failure is not None:
            raise self._failure

    async def send_signal(self, room: str, peer_id: str, data: bytes) -> bool:
        """Send a payload to ``peer_id``; False while disconnected (the caller retries)."""
        connection = self._connection
        if connection is None:
            return False
        try:
            async with asyncio.timeout(self.open_timeout):
                await connection.send(encode_signaling(Signal(room, peer_id, data)))
        except (ConnectionClosed, TimeoutError):
            return False
        return True

    async def aclose(self) -> None:
        """Leave the server; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- internals ------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with dial(
                    self.url, open_timeout=self.open_timeout, tls=self._tls
                ) as connection:
                    await self._introduce(connection)
                    self.servers.connected(loop.time())
                    self._set_connection(connection)
                    logger.info("= %s connected to %s", self.peer_id, self.url)
                    await self._serve(connection)
            except (*CONNECTION_LOST, ProtocolError) as exc:
                if isinstance(exc, ProtocolError):
                    logger.warning("! %s: %s broke the protocol: %s", self.peer_id, self.url, exc)
                delay = self.servers.ended(self.peer_id, exc, loop.time())
            except SignalingError as exc:  # refused for good (version, token)
                logger.warning("! %s: signaling refused: %s", self.peer_id, exc)
                self._failure = exc
                for event in self._joined.values():
                    event.set()
                return
            finally:
                self._set_connection(None)
            await asyncio.sleep(delay)

    async def _receive(self, connection: ClientConnection, timeout: float) -> SignalingMessage:
        async with asyncio.timeout(timeout):  # no inner task: cancelling us stays prompt
            data = await connection.recv()
        if isinstance(data, str):
            raise ProtocolError("the signaling server sent a text frame")
        return decode_signaling(data, max_size=MAX_MESSAGE_SIZE)

    async def _introduce(self, connection: ClientConnection) -> None:
        await connection.send(encode_signaling(Hello(self.identity.public_key)))
        challenge = await self._receive(connection, self.open_timeout)
        if isinstance(challenge, Error):
            raise SignalingError(f"{challenge.code}: {challenge.message}")
        if not isinstance(challenge, Challenge):
            raise ProtocolError(f"expected a challenge, got {type(challenge).__name__}")
        proof = self.identity.prove(self.servers.origin, challenge.nonce)
        await connection.send(encode_signaling(Prove(proof)))
        welcome = await self._receive(connection, self.open_timeout)
        if not isinstance(welcome, Welcome) or welcome.peer_id != self.peer_id:
            raise ProtocolError(f"expected welcome as {self.peer_id}, got {welcome!r}")
        self.turn_credentials = welcome.turn
        for room, token in self.rooms.items():
            await connection.send(encode_signaling(Join(room, token)))

    async def _serve(self, connection: ClientConnection) -> None:
        while True:
            try:
                message = await self._receive(connection, self.ping_interval)
            except TimeoutError:
                self._nonce += 1
                await connection.send(encode_signaling(Ping(self._nonce)))
                continue
            if isinstance(message, Joined):
                self._set_members(message.room, message.peers)
                self._joined[message.room].set()
            elif isinstance(message, PeerJoined):
                self._set_members(message.room, self.members(message.room) | {message.peer_id})
            elif isinstance(message, PeerLeft):
                self._set_members(message.room, self.members(message.room) - {message.peer_id})
            elif isinstance(message, Signal):
                self.listener.signal_received(message.room, message.peer_id, message.data)
            elif isinstance(message, Error):
                if message.code == "token":
                    raise SignalingError(f"join refused: {message.message}")
                # A peer that left while our signal was on its way, or one others keep busy,
                # is churn, not a fault (the link setup retries).
                churn = message.code in ("no-such-peer", "target-busy")
                level = logging.INFO if churn else logging.WARNING
                logger.log(
                    level,
                    "! %s: signaling server says %s: %s",
                    self.peer_id,
                    message.code,
                    message.message,
                )

    def _set_connection(self, connection: ClientConnection | None) -> None:
        changed = (connection is None) != (self._connection is None)
        self._connection = connection
        self._connection_changed.set()
        if changed and self.on_connection_changed is not None:
            self.on_connection_changed(connection is not None)
        if connection is None and self._failure is None:
            for joined in self._joined.values():
                joined.clear()  # joined again only once the server says so

    def _set_members(self, room: str, members: frozenset[str]) -> None:
        if room in self.rooms and members != self._members.get(room):
            self._members[room] = members
            self.listener.members_changed(room, members)
