"""The signaling server's core, sans I/O: rooms, assigned ids, targeted relay, and limits.

Fed with ``connect()``, ``receive()``, ``sent()``, ``disconnect()`` and ``handle_timer()``,
drained with ``take_outgoing()`` (bytes per connection) and ``take_closing()``. The websockets
adapter in ``server.py`` only moves bytes and says how many went out, so the router knows
each client's backlog and refuses relays to one that is behind ("target-busy") instead of
letting others fill its queue. A client over a limit gets an ``error`` message; one that
keeps at it is disconnected; nobody else notices.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from crdtsync.errors import ProtocolError
from crdtsync.protocol.signaling import (
    SIGNALING_VERSION,
    Challenge,
    Error,
    Hello,
    Join,
    Joined,
    Leave,
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
from crdtsync.signaling.identity import peer_id_of, verify_proof
from crdtsync.signaling.limits import (
    ConnectionLimits,
    DeadlineHeap,
    SignalingSettings,
    cut,
    frame_size,
    short,
)
from crdtsync.signaling.tokens import verify_join_token
from crdtsync.signaling.turn import TurnSettings

__all__ = ["Router", "SignalingSettings"]  # SignalingSettings lives in limits.py

logger = logging.getLogger("crdtsync.signaling")

# Refusals that are churn or others' doing, not the client's fault: a peer that left while
# the signal was on its way, a target whose queue others filled. They are answered, not
# counted, so an honest peer is never disconnected for them.
_NOT_COUNTED = {"no-such-peer": 0.0, "target-busy": 0.0}


@dataclass
class _Client:
    conn: int
    limits: ConnectionLimits
    address: str
    origins: tuple[str, ...]
    peer_id: str | None = None
    public_key: bytes | None = None
    nonce: bytes = b""
    rooms: set[str] = field(default_factory=set)
    backlog: int = 0  # bytes sent to it that the adapter has not yet handed to the network


class Router:
    """Rooms and routing for all connections of one server."""

    def __init__(
        self,
        settings: SignalingSettings | None = None,
        *,
        new_nonce: Callable[[], bytes] = lambda: secrets.token_bytes(32),
        wall_clock: Callable[[], float] = time.time,
        turn: TurnSettings | None = None,
    ) -> None:
        self.settings = settings or SignalingSettings()
        self.turn = turn  # TURN credentials for each peer that logs in (None: no TURN)
        self._new_nonce = new_nonce
        self._wall_clock = wall_clock
        self._clients: dict[int, _Client] = {}
        self._by_peer: dict[str, _Client] = {}
        self._rooms: dict[str, set[str]] = {}
        self._room_addresses: dict[str, dict[str, int]] = {}  # room -> address -> members
        self._deadlines = DeadlineHeap(self._limits_of)
        self._next_conn = 0
        self._outgoing: list[tuple[int, bytes]] = []
        self._closing: list[tuple[int, int, str]] = []

    @property
    def rooms(self) -> dict[str, frozenset[str]]:
        """Each room's members (peer ids), for logs and tests."""
        return {room: frozenset(members) for room, members in self._rooms.items()}

    # -- inputs -------------------------------------------------------------------------------

    def connect(
        self, now: float, *, path: str = "/", address: str = "", origin: str | None = None
    ) -> int:
        """A new connection; returns its handle. Nothing to send until it says hello.

        ``address`` keys the per-room cap (``limits.address_key``); ``origin`` is the one the
        request named (Host), used for login proofs unless ``settings.origins`` is set.
        ``path`` (the request path) is unused: native clients carry tokens in ``join``.
        """
        self._next_conn += 1
        conn = self._next_conn
        origins = self.settings.origins or ((origin,) if origin else ())
        self._clients[conn] = _Client(conn, ConnectionLimits(self.settings, now), address, origins)
        self._deadlines.push(self._clients[conn].limits.deadline, conn)
        return conn

    def receive(self, conn: int, data: bytes | str, now: float) -> None:
        """One message from ``conn``; then drain ``take_outgoing()`` and ``take_closing()``."""
        client = self._clients.get(conn)
        if client is None:
            return
        refusal = client.limits.receive(now, frame_size(data))
        if refusal is not None:
            self._refuse(client, now, *refusal)
            return
        if isinstance(data, str):
            self._refuse(client, now, "malformed", "a text frame: this protocol is binary msgpack")
            return
        try:
            message = decode_signaling(data, max_size=self.settings.max_message_size)
        except ProtocolError as exc:
            self._refuse(client, now, "malformed", str(exc))
            return
        self._handle(client, message, now)

    def sent(self, conn: int, size: int) -> None:
        """``size`` bytes of ``conn``'s output reached the network: room for more relays."""
        client = self._clients.get(conn)
        if client is not None:
            client.backlog = max(0, client.backlog - size)

    def disconnect(self, conn: int) -> None:
        """The connection is gone: leave its rooms; then drain ``take_outgoing()``."""
        client = self._clients.pop(conn, None)
        if client is None:
            return
        for room in list(client.rooms):
            self._leave(client, room)
        if client.peer_id is not None:
            del self._by_peer[client.peer_id]
            logger.info("= %s disconnected", client.peer_id)

    def handle_timer(self, now: float) -> None:
        """Drop connections past their deadline (login, idle); then drain ``take_closing()``."""
        for conn, code, reason in self._deadlines.expire(now):
            self._close(self._clients[conn], code, reason)

    def get_timer(self) -> float | None:
        """When ``handle_timer()`` must next run; O(1) amortised (``DeadlineHeap``)."""
        return self._deadlines.next()

    def _limits_of(self, conn: int) -> ConnectionLimits | None:
        client = self._clients.get(conn)
        return None if client is None else client.limits

    # -- outputs ------------------------------------------------------------------------------

    def take_outgoing(self) -> list[tuple[int, bytes]]:
        """Messages to send, each with its connection, in order."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def take_closing(self) -> list[tuple[int, int, str]]:
        """Connections to close, with a WebSocket close code and reason."""
        closing, self._closing = self._closing, []
        return closing

    # -- rules --------------------------------------------------------------------------------

    def _handle(self, client: _Client, message: SignalingMessage, now: float) -> None:
        if client.peer_id is None:
            self._introduce(client, message)
            return
        if isinstance(message, Join):
            self._join(client, message, now)
        elif isinstance(message, Leave):
            if message.room in client.rooms:
                self._leave(client, message.room)
        elif isinstance(message, Signal):
            self._relay(client, message, now)
        elif isinstance(message, Ping):
            self._send(client, Pong(message.nonce))
        else:
            kind = type(message).__name__.lower()
            self._refuse(client, now, "unexpected", f"clients do not send {kind}")

    def _introduce(self, client: _Client, message: SignalingMessage) -> None:
        """hello, challenge, prove, welcome: the id is the key's, proven fresh, for us."""
        if client.public_key is None:
            if not isinstance(message, Hello):
                self._close(client, 1002, "the first message must be hello")
            elif message.version != SIGNALING_VERSION:
                self._send(
                    client,
                    Error("version", f"server speaks {SIGNALING_VERSION}, not {message.version}"),
                )
                self._close(client, 1002, "unsupported signaling version")
            else:
                client.public_key = message.public_key
                client.nonce = self._new_nonce()
                self._send(client, Challenge(client.nonce))
            return
        if not isinstance(message, Prove) or not any(
            verify_proof(client.public_key, origin, client.nonce, message.signature)
            for origin in client.origins
        ):
            # Also a proof made for another server's origin: a relayed challenge.
            self._close(client, 1008, "no valid proof of the key named in hello")
            return
        peer_id = peer_id_of(client.public_key)
        previous = self._by_peer.get(peer_id)
        if previous is not None:
            # The same peer reconnected before its old connection timed out: the new one wins.
            self._close(previous, 4000, "replaced by a newer connection of the same peer")
        client.peer_id = peer_id
        client.limits.logged_in()
        self._by_peer[peer_id] = client
        turn = None if self.turn is None else self.turn.credentials(peer_id, self._wall_clock())
        self._send(client, Welcome(peer_id, turn=turn))
        logger.info("= %s connected", peer_id)

    def _join(self, client: _Client, join: Join, now: float) -> None:
        assert client.peer_id is not None
        if join.room in client.rooms:
            self._refuse(client, now, "already-joined", f"already in room {short(join.room)}")
            return
        secret = self.settings.token_secret
        if secret is not None:
            problem = (
                "missing"
                if join.token is None
                else verify_join_token(
                    secret, join.room, join.token, self._wall_clock(), client.peer_id
                )
            )
            if problem is not None:
                reason = f"join token {problem} for room {short(join.room)}"
                self._refuse(client, now, "token", reason)
                return
        members = self._rooms.get(join.room, set())
        addresses = self._room_addresses.get(join.room, {})
        refusal = client.limits.join(
            join.room, len(client.rooms), len(members), addresses.get(client.address, 0)
        )
        if refusal is not None:
            self._refuse(client, now, *refusal)
            return
        self._rooms[join.room] = members
        self._room_addresses[join.room] = addresses
        self._send(client, Joined(join.room, frozenset(members)))
        for member in members:
            self._send(self._by_peer[member], PeerJoined(join.room, client.peer_id))
        members.add(client.peer_id)
        addresses[client.address] = addresses.get(client.address, 0) + 1
        client.rooms.add(join.room)
        logger.info("= %s joined %s (%d peers)", client.peer_id, short(join.room), len(members))

    def _leave(self, client: _Client, room: str) -> None:
        assert client.peer_id is not None
        client.rooms.discard(room)
        members = self._rooms.get(room, set())
        members.discard(client.peer_id)
        addresses = self._room_addresses.get(room, {})
        if addresses.get(client.address, 0) > 1:
            addresses[client.address] -= 1
        else:
            addresses.pop(client.address, None)
        for member in members:
            self._send(self._by_peer[member], PeerLeft(room, client.peer_id))
        if not members:
            self._rooms.pop(room, None)
            self._room_addresses.pop(room, None)
        logger.info("= %s left %s", client.peer_id, short(room))

    def _relay(self, client: _Client, signal: Signal, now: float) -> None:
        assert client.peer_id is not None
        target = self._by_peer.get(signal.peer_id)
        if signal.room not in client.rooms or target is None or signal.room not in target.rooms:
            # Never across rooms, never to strangers: both must be in the room.
            reason = f"no peer {short(signal.peer_id)} in room {short(signal.room)}"
            self._refuse(client, now, "no-such-peer", reason)
            return
        data = encode_signaling(Signal(signal.room, client.peer_id, signal.data))
        if target.backlog + len(data) > self.settings.send_queue_bytes:
            # The target is behind (others keep it busy): the sender waits, nobody is dropped.
            reason = f"peer {short(signal.peer_id)} has {target.backlog} bytes waiting; retry"
            self._refuse(client, now, "target-busy", reason)
            return
        self._queue(target, data)

    # -- helpers ------------------------------------------------------------------------------

    def _send(self, client: _Client, message: SignalingMessage) -> None:
        self._queue(client, encode_signaling(message))

    def _queue(self, client: _Client, data: bytes) -> None:
        client.backlog += len(data)
        self._outgoing.append((client.conn, data))

    def _refuse(self, client: _Client, now: float, code: str, reason: str) -> None:
        # The reason may quote the peer's input (a decoder's complaint): keep it short.
        reason = cut(reason)
        who = client.peer_id or f"connection {client.conn}"
        logger.info("! %s refused (%s): %s", who, code, reason)
        close = client.limits.refused(code, now, _NOT_COUNTED.get(code, 1.0))
        if close is not None:
            self._close(client, *close)
            return
        self._send(client, Error(code, reason))

    def _close(self, client: _Client, code: int, reason: str) -> None:
        self._closing.append((client.conn, code, reason))
        self.disconnect(client.conn)
