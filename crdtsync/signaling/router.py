"""The signaling server's core, sans I/O: rooms, assigned ids, targeted relay, and limits.

Fed with ``connect()``, ``receive()``, ``sent()``, ``disconnect()`` and ``handle_timer()``,
drained with ``take_outgoing()`` (bytes per connection) and ``take_closing()``. The websockets
adapter in ``server.py`` only moves bytes and says how many went out, so the router knows
each client's backlog and refuses relays to one that is behind ("target-busy") instead of
letting others fill its queue. A client over a limit gets an ``error`` message; one that
keeps at it is disconnected; nobody else notices. ``clustered=True`` shares rooms with other
servers through a backplane (``cluster.py``): joins wait for a seat, leaves release it, signals
to peers elsewhere are forwarded, and members elsewhere are announced like local ones.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
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
from crdtsync.signaling.cluster import Claim, ClusterCommand, Forward, Release, RemoteMembers
from crdtsync.signaling.identity import peer_id_of, verify_proof
from crdtsync.signaling.limits import (
    ConnectionLimits,
    DeadlineHeap,
    SignalingSettings,
    cut,
    frame_size,
    short,
)
from crdtsync.signaling.log_format import log_fields
from crdtsync.signaling.tally import Tally
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
    claiming: set[str] = field(default_factory=set)  # rooms waiting for a cluster-wide seat
    backlog: int = 0  # bytes sent to it that the adapter has not yet handed to the network


class Router:
    """Rooms and routing for all connections of one server."""

    def __init__(
        self,
        settings: SignalingSettings | None = None,
        *,
        new_nonce: Callable[[], bytes] = lambda: secrets.token_bytes(32),
        wall_clock: Callable[[], float] = time.time,
        clustered: bool = False,
        turn: TurnSettings | None = None,
    ) -> None:
        self.settings = settings or SignalingSettings()
        self.clustered = clustered
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
        self._remote = RemoteMembers()
        self._commands: list[ClusterCommand] = []
        self.tally = Tally()  # for /metrics

    @property
    def rooms(self) -> dict[str, frozenset[str]]:
        """Each room's members here (peer ids), for logs, metrics, the backplane and tests."""
        return {room: frozenset(members) for room, members in self._rooms.items()}

    @property
    def room_count(self) -> int:
        """Rooms with at least one member (for /metrics and /healthz), in O(1)."""
        return len(self._rooms)

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
        for room in [*client.rooms, *client.claiming]:
            self._leave(client, room)
        if client.peer_id is not None:
            del self._by_peer[client.peer_id]
            logger.info(
                "= %s disconnected",
                client.peer_id,
                extra=log_fields("disconnected", peer=client.peer_id),
            )

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

    # -- inputs from the backplane (clustered) -------------------------------------------------

    def seat_granted(self, conn: int, room: str, elsewhere: Mapping[str, str]) -> None:
        """``conn``'s claim on ``room`` holds; ``elsewhere`` are the members (peer id ->
        server) other servers hold. Completes the join; then drain ``take_outgoing()``."""
        client = self._clients.get(conn)
        if client is None or room not in client.claiming:
            return  # it left meanwhile; its Release follows the claim
        client.claiming.discard(room)
        if room in self._rooms:
            self.members_elsewhere(room, elsewhere)  # news for our members there
        else:
            self._remote.replace(room, elsewhere)
        self._enter(client, room)

    def seat_refused(self, conn: int, room: str, now: float) -> None:
        """Every seat of ``room`` is taken on some server: the join is refused."""
        client = self._clients.get(conn)
        if client is not None and room in client.claiming:
            client.claiming.discard(room)
            limit = self.settings.max_peers_per_room
            self._refuse(client, now, "room-full", f"room {short(room)} has {limit} peers")

    def joined_elsewhere(self, room: str, peer_id: str, server: str) -> None:
        """``peer_id`` joined ``room`` at ``server``: our members in it hear of it. If it is
        connected here too, that connection is the older one (a peer keeps one): it is
        replaced, as a reconnect to this server would replace it, so signals for the peer
        stop going to a connection it left."""
        stale = self._by_peer.get(peer_id)
        if stale is not None and room in stale.rooms:
            self._close(stale, 4000, "replaced by a newer connection of the same peer elsewhere")
        local = self._rooms.get(room)
        if local is not None and self._remote.add(room, peer_id, server):
            self._announce(room, PeerJoined(room, peer_id))

    def left_elsewhere(self, room: str, peer_id: str, server: str) -> None:
        """``peer_id`` left ``room`` at ``server``."""
        if self._remote.remove(room, peer_id, server):
            self._announce(room, PeerLeft(room, peer_id))

    def members_elsewhere(self, room: str, members: Mapping[str, str]) -> None:
        """The backplane's whole list of ``room``'s members on other servers (a refresh, or a
        merge after an outage): what differs is announced."""
        if room not in self._rooms:
            return
        local = self._rooms[room]
        added, removed = self._remote.replace(
            room, {peer: server for peer, server in members.items() if peer not in local}
        )
        for peer_id in sorted(removed):
            self._announce(room, PeerLeft(room, peer_id))
        for peer_id in sorted(added):
            self._announce(room, PeerJoined(room, peer_id))

    def signal_from_elsewhere(self, room: str, sender: str, target: str, data: bytes) -> None:
        """A signal a peer on another server sent to ``target``, one of ours."""
        client = self._by_peer.get(target)
        if client is None or room not in client.rooms:
            logger.debug("= forwarded signal to %s in %s: not here", short(target), short(room))
            return
        frame = encode_signaling(Signal(room, sender, data))
        if client.backlog + len(frame) > self.settings.send_queue_bytes:
            logger.debug("= forwarded signal to busy %s dropped", short(target))
            return  # its sender's link setup retries, as after any lost signal
        self._queue(client, frame)

    def backplane_lost(self) -> None:
        """The backplane is gone: every room is local; members elsewhere leave."""
        for room, peers in self._remote.clear().items():
            for peer_id in sorted(peers):
                self._announce(room, PeerLeft(room, peer_id))

    def take_commands(self) -> list[ClusterCommand]:
        """What the backplane must do, in order (empty unless clustered)."""
        commands, self._commands = self._commands, []
        return commands

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
        logger.info("= %s connected", peer_id, extra=log_fields("connected", peer=peer_id))

    def _join(self, client: _Client, join: Join, now: float) -> None:
        assert client.peer_id is not None
        if join.room in client.rooms or join.room in client.claiming:
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
        room = join.room
        # Members here only: across servers the claim's script counts (what we heard of
        # others may be a moment old, and a seat freed there must not be refused here).
        members = len(self._rooms.get(room, ()))
        from_address = self._room_addresses.get(room, {}).get(client.address, 0)
        rooms = len(client.rooms) + len(client.claiming)
        refusal = client.limits.join(room, rooms, members, from_address)
        if refusal is not None:
            self._refuse(client, now, *refusal)
        elif self.clustered:
            client.claiming.add(room)
            limit = self.settings.max_peers_per_room
            self._commands.append(Claim(room, client.peer_id, client.conn, limit))
        else:
            self._enter(client, room)

    def _enter(self, client: _Client, room: str) -> None:
        assert client.peer_id is not None
        members = self._rooms.setdefault(room, set())
        addresses = self._room_addresses.setdefault(room, {})
        self._send(client, Joined(room, frozenset(members) | self._remote.members(room)))
        self._announce(room, PeerJoined(room, client.peer_id))
        members.add(client.peer_id)
        addresses[client.address] = addresses.get(client.address, 0) + 1
        client.rooms.add(room)
        self.tally.joins += 1
        total = len(members) + self._remote.count(room)
        logger.info(
            "= %s joined %s (%d peers)",
            client.peer_id,
            short(room),
            total,
            extra=log_fields("joined", room=room, peer=client.peer_id),
        )

    def _leave(self, client: _Client, room: str) -> None:
        assert client.peer_id is not None
        if self.clustered:
            self._commands.append(Release(room, client.peer_id))
        if room in client.claiming:
            client.claiming.discard(room)
            return
        client.rooms.discard(room)
        members = self._rooms.get(room, set())
        members.discard(client.peer_id)
        addresses = self._room_addresses.get(room, {})
        if addresses.get(client.address, 0) > 1:
            addresses[client.address] -= 1
        else:
            addresses.pop(client.address, None)
        self._announce(room, PeerLeft(room, client.peer_id))
        if not members:
            self._rooms.pop(room, None)
            self._room_addresses.pop(room, None)
            self._remote.forget(room)
        logger.info(
            "= %s left %s",
            client.peer_id,
            short(room),
            extra=log_fields("left", room=room, peer=client.peer_id),
        )

    def _relay(self, client: _Client, signal: Signal, now: float) -> None:
        assert client.peer_id is not None
        target = self._by_peer.get(signal.peer_id)
        server = self._remote.server_of(signal.room, signal.peer_id)
        if signal.room in client.rooms and target is None and server is not None:
            self._commands.append(
                Forward(server, signal.room, client.peer_id, signal.peer_id, signal.data)
            )
            return
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
        self.tally.relayed["signal"] += 1

    # -- helpers ------------------------------------------------------------------------------

    def _send(self, client: _Client, message: SignalingMessage) -> None:
        self._queue(client, encode_signaling(message))

    def _announce(self, room: str, message: PeerJoined | PeerLeft) -> None:
        """Tell our members of ``room`` (not the peer it is about)."""
        data = encode_signaling(message)
        for member in self._rooms.get(room, ()):
            if member != message.peer_id:
                self._queue(self._by_peer[member], data)

    def _queue(self, client: _Client, data: bytes) -> None:
        client.backlog += len(data)
        self._outgoing.append((client.conn, data))

    def _refuse(self, client: _Client, now: float, code: str, reason: str) -> None:
        # The reason may quote the peer's input (a decoder's complaint): keep it short.
        reason = cut(reason)
        who = client.peer_id or f"connection {client.conn}"
        self.tally.refusals[code] += 1
        logger.info(
            "! %s refused (%s): %s",
            who,
            code,
            reason,
            extra=log_fields("refused", peer=client.peer_id, connection=client.conn, code=code),
        )
        close = client.limits.refused(code, now, _NOT_COUNTED.get(code, 1.0))
        if close is not None:
            self._close(client, *close)
            return
        self._send(client, Error(code, reason))

    def _close(self, client: _Client, code: int, reason: str) -> None:
        self._closing.append((client.conn, code, reason))
        self.disconnect(client.conn)
