"""The y-webrtc signaling core, sans I/O: topics (rooms), pub/sub relay, limits.

Unmodified y-webrtc clients subscribe to topics and publish announce and signal payloads to
them. Fed with ``connect()``, ``receive()``, ``disconnect()`` and ``handle_timer()``, drained
with ``take_outgoing()`` (text frames per connection) and ``take_closing()``, like ``Router``
and with the same limits (``limits.py``). In plaintext rooms a ``signal`` goes only to the
connection that announced its ``to`` id in that topic; encrypted payloads go to the topic.
The adapter reports bytes written (``sent()``): a signal to a connection that is behind is
refused to its sender ("target-busy"), a broadcast skips it; nobody is dropped for others.
y-webrtc ids are not proven, so tokens bound to a peer id (``tokens.py``) admit nobody here.
``clustered=True`` shares topics with other servers (``cluster.py``): a subscription holds at
once (y-webrtc publishes right after subscribing) while its seat is claimed, and is undone if
the room is full elsewhere; a publish that may concern subscribers elsewhere is fanned out to
their servers, whose cores route it to their own connections by the same rules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from crdtsync.errors import LocalProtocolError, ProtocolError
from crdtsync.protocol.ywebrtc_signaling import (
    Error,
    Ping,
    Pong,
    Publish,
    Subscribe,
    TopicMessage,
    Unsubscribe,
    decode_topic_message,
    encode_topic_message,
    relayed_publish,
)
from crdtsync.signaling.cluster import Claim, ClusterCommand, Fanout, Release, RemoteMembers
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

__all__ = ["TopicRouter"]

logger = logging.getLogger("crdtsync.signaling")

# y-webrtc peer ids are UUIDs (36 characters); a longer ``from`` is relayed but never bound.
_MAX_ID_LENGTH = 128
# Ids one connection may have bound in one topic: a JS room has one id, a provider destroyed
# and made again in the same process gets a new one. Older bindings are forgotten first.
_MAX_IDS_PER_SUBSCRIPTION = 4
# Tokens read from the URL (``?token=a&token=b``: one per room a JS process opens).
_MAX_TOKENS = 16
_MAX_TOKEN_LENGTH = 512
# As in the native router: a target behind on reading is others' doing, not the sender's.
_NOT_COUNTED = {"target-busy": 0.0}


@dataclass
class _Subscriber:
    conn: int
    limits: ConnectionLimits
    tokens: tuple[str, ...]
    address: str
    # Each subscribed topic, with the ids this connection bound there (oldest first).
    topics: dict[str, list[str]] = field(default_factory=dict)
    claiming: set[str] = field(default_factory=set)  # subscribed, its cluster-wide seat asked
    backlog: int = 0  # bytes sent to it that the adapter has not yet handed to the network


class TopicRouter:
    """Topics and relay for all y-webrtc connections of one server."""

    def __init__(
        self,
        settings: SignalingSettings | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
        clustered: bool = False,
    ) -> None:
        self.settings = settings or SignalingSettings()
        self.clustered = clustered
        self._wall_clock = wall_clock
        self._subscribers: dict[int, _Subscriber] = {}
        self._topics: dict[str, dict[int, _Subscriber]] = {}
        self._bound: dict[str, dict[str, int]] = {}  # topic -> peer id -> connection
        self._topic_addresses: dict[str, dict[str, int]] = {}  # topic -> address -> members
        self._deadlines = DeadlineHeap(self._limits_of)
        self._next_conn = 0
        self._outgoing: list[tuple[int, str]] = []
        self._closing: list[tuple[int, int, str]] = []
        self._remote = RemoteMembers()
        self._commands: list[ClusterCommand] = []
        self.tally = Tally()  # for /metrics

    @property
    def topics(self) -> dict[str, frozenset[int]]:
        """Each topic's subscribers here (connection handles), for logs, metrics and tests."""
        return {topic: frozenset(members) for topic, members in self._topics.items()}

    @property
    def rooms(self) -> dict[str, frozenset[str]]:
        """Each topic's seats here, as the backplane names them (connection handles)."""
        return {topic: frozenset(map(str, members)) for topic, members in self._topics.items()}

    @property
    def room_count(self) -> int:
        """Topics with at least one subscriber (for /metrics and /healthz), in O(1)."""
        return len(self._topics)

    # -- inputs -------------------------------------------------------------------------------

    def connect(
        self, now: float, *, path: str = "/", address: str = "", origin: str | None = None
    ) -> int:
        """A new connection; ``path`` is its request path, whose ``token`` parameters admit it
        to token-guarded topics (y-webrtc can pass nothing else). ``address`` keys the
        per-topic cap; ``origin`` is unused (no login). Returns its handle."""
        self._next_conn += 1
        conn = self._next_conn
        limits = ConnectionLimits(self.settings, now, login=False)
        self._subscribers[conn] = _Subscriber(conn, limits, _tokens_of(path), address)
        self._deadlines.push(limits.deadline, conn)
        return conn

    def receive(self, conn: int, data: bytes | str, now: float) -> None:
        """One frame from ``conn``; then drain ``take_outgoing()`` and ``take_closing()``."""
        subscriber = self._subscribers.get(conn)
        if subscriber is None:
            return
        refusal = subscriber.limits.receive(now, frame_size(data))
        if refusal is not None:
            self._refuse(subscriber, now, *refusal)
            return
        try:
            message = decode_topic_message(data, max_size=self.settings.max_message_size)
        except ProtocolError as exc:
            self._refuse(subscriber, now, "malformed", str(exc))
            return
        self._handle(subscriber, message, data, now)

    def sent(self, conn: int, size: int) -> None:
        """``size`` bytes of ``conn``'s output reached the network: room for more relays."""
        subscriber = self._subscribers.get(conn)
        if subscriber is not None:
            subscriber.backlog = max(0, subscriber.backlog - size)

    def disconnect(self, conn: int) -> None:
        """The connection is gone: leave its topics."""
        subscriber = self._subscribers.pop(conn, None)
        if subscriber is None:
            return
        for topic in list(subscriber.topics):
            self._leave(subscriber, topic)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "= y-webrtc connection %d disconnected",
                conn,
                extra=log_fields("disconnected", connection=conn),
            )

    def handle_timer(self, now: float) -> None:
        """Drop connections past their deadline (login, idle); then drain ``take_closing()``."""
        for conn, code, reason in self._deadlines.expire(now):
            self._close(self._subscribers[conn], code, reason)

    def get_timer(self) -> float | None:
        """When ``handle_timer()`` must next run; O(1) amortised (``DeadlineHeap``)."""
        return self._deadlines.next()

    def _limits_of(self, conn: int) -> ConnectionLimits | None:
        subscriber = self._subscribers.get(conn)
        return None if subscriber is None else subscriber.limits

    # -- inputs from the backplane (clustered) -------------------------------------------------

    def seat_granted(self, conn: int, room: str, elsewhere: Mapping[str, str]) -> None:
        """``conn``'s claim on topic ``room`` holds; ``elsewhere``: the seats other servers
        hold there (handle -> server)."""
        subscriber = self._subscribers.get(conn)
        if subscriber is not None and room in subscriber.claiming:
            subscriber.claiming.discard(room)
            self.members_elsewhere(room, elsewhere)

    def seat_refused(self, conn: int, room: str, now: float) -> None:
        """Every seat of topic ``room`` is taken on some server: the subscription is undone."""
        subscriber = self._subscribers.get(conn)
        if subscriber is not None and room in subscriber.claiming:
            self._leave(subscriber, room)
            limit = self.settings.max_peers_per_room
            self._refuse(subscriber, now, "room-full", f"room {short(room)} has {limit} peers")

    def joined_elsewhere(self, room: str, member: str, server: str) -> None:
        if room in self._topics:
            self._remote.add(room, member, server)

    def left_elsewhere(self, room: str, member: str, server: str) -> None:
        self._remote.remove(room, member, server)

    def members_elsewhere(self, room: str, members: Mapping[str, str]) -> None:
        if room in self._topics:
            self._remote.replace(room, members)

    def publish_from_elsewhere(self, frame: str) -> None:
        """A publish another server fanned out: routed to our subscribers by our rules."""
        try:
            message = decode_topic_message(frame, max_size=self.settings.max_message_size)
        except ProtocolError as exc:  # servers of one cluster speak alike: log, never raise
            logger.warning("! fanned-out publish not understood: %s", cut(str(exc)))
            return
        if isinstance(message, Publish) and message.topic in self._topics:
            self._deliver(None, message.topic, message.data, frame, None)

    def has_members_elsewhere(self, room: str) -> bool:
        """Would a publish to ``room`` be fanned out (as the backplane last said)?"""
        return self._remote.has_servers(room)

    def backplane_lost(self) -> None:
        """The backplane is gone: every topic is local."""
        self._remote.clear()

    def take_commands(self) -> list[ClusterCommand]:
        """What the backplane must do, in order (empty unless clustered)."""
        commands, self._commands = self._commands, []
        return commands

    # -- outputs ------------------------------------------------------------------------------

    def take_outgoing(self) -> list[tuple[int, str]]:
        """Text frames to send, each with its connection, in order."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def take_closing(self) -> list[tuple[int, int, str]]:
        """Connections to close, with a WebSocket close code and reason."""
        closing, self._closing = self._closing, []
        return closing

    # -- rules --------------------------------------------------------------------------------

    def _handle(
        self, subscriber: _Subscriber, message: TopicMessage, frame: str | bytes, now: float
    ) -> None:
        if isinstance(message, Subscribe):
            self._subscribe(subscriber, message.topics, now)
        elif isinstance(message, Unsubscribe):
            for topic in message.topics:
                if topic in subscriber.topics:
                    self._leave(subscriber, topic)
        elif isinstance(message, Publish):
            self._publish(subscriber, message, frame, now)
        elif isinstance(message, Ping):
            self._send(subscriber, Pong())
        else:
            kind = type(message).__name__.lower()
            self._refuse(subscriber, now, "unexpected", f"clients do not send {kind}")

    def _subscribe(self, subscriber: _Subscriber, topics: tuple[str, ...], now: float) -> None:
        for topic in dict.fromkeys(topics):
            if topic in subscriber.topics:
                continue  # subscribe is idempotent: clients resend it on every reconnect
            problem = self._token_problem(subscriber, topic)
            if problem is not None:
                reason = f"join token {problem} for room {short(topic)}"
                if not self._refuse(subscriber, now, "token", reason):
                    return
                continue
            members = len(self._topics.get(topic, ()))  # across servers: the claim's count
            from_address = self._topic_addresses.get(topic, {}).get(subscriber.address, 0)
            refusal = subscriber.limits.join(topic, len(subscriber.topics), members, from_address)
            if refusal is not None:
                if not self._refuse(subscriber, now, *refusal) or refusal[0] == "too-many-rooms":
                    return  # the rest of the list would be refused the same way
            else:
                self._enter(subscriber, topic)

    def _enter(self, subscriber: _Subscriber, topic: str) -> None:
        members = self._topics.setdefault(topic, {})
        addresses = self._topic_addresses.setdefault(topic, {})
        members[subscriber.conn] = subscriber
        addresses[subscriber.address] = addresses.get(subscriber.address, 0) + 1
        subscriber.topics[topic] = []
        self.tally.joins += 1
        if self.clustered:
            subscriber.claiming.add(topic)
            limit = self.settings.max_peers_per_room
            self._commands.append(Claim(topic, str(subscriber.conn), subscriber.conn, limit))
        logger.info(
            "= y-webrtc connection %d subscribed to %s (%d subscribers)",
            subscriber.conn,
            short(topic),
            len(members) + self._remote.count(topic),
            extra=log_fields("joined", room=topic, connection=subscriber.conn),
        )

    def _token_problem(self, subscriber: _Subscriber, topic: str) -> str | None:
        secret = self.settings.token_secret
        if secret is None:
            return None
        if not subscriber.tokens:
            return "missing"
        now = self._wall_clock()
        problems = [verify_join_token(secret, topic, token, now) for token in subscriber.tokens]
        if None in problems:
            return None
        return "expired" if "expired" in problems else problems[0]

    def _leave(self, subscriber: _Subscriber, topic: str) -> None:
        if self.clustered:
            self._commands.append(Release(topic, str(subscriber.conn)))
        subscriber.claiming.discard(topic)
        bound = self._bound.get(topic, {})
        for peer_id in subscriber.topics.pop(topic, []):
            if bound.get(peer_id) == subscriber.conn:
                del bound[peer_id]
        if not bound:
            self._bound.pop(topic, None)
        members = self._topics.get(topic, {})
        if members.pop(subscriber.conn, None) is not None:
            addresses = self._topic_addresses.get(topic, {})
            if addresses.get(subscriber.address, 0) > 1:
                addresses[subscriber.address] -= 1
            else:
                addresses.pop(subscriber.address, None)
        if not members:
            self._topics.pop(topic, None)
            self._topic_addresses.pop(topic, None)
            self._remote.forget(topic)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "= y-webrtc connection %d left %s",
                subscriber.conn,
                short(topic),
                extra=log_fields("left", room=topic, connection=subscriber.conn),
            )

    def _publish(
        self, subscriber: _Subscriber, publish: Publish, frame: str | bytes, now: float
    ) -> None:
        topic, data = publish.topic, publish.data
        members = self._topics.get(topic, {})
        if subscriber.conn not in members:
            reason = f"not subscribed to topic {short(topic)}"
            self._refuse(subscriber, now, "unexpected", reason)
            return
        try:
            relayed = relayed_publish(frame, publish, len(members))
        except LocalProtocolError as exc:  # cannot happen for decoded input; never raise
            self._refuse(subscriber, now, "malformed", str(exc))
            return
        if isinstance(data, dict):  # a plaintext room: announce and signal name their peers
            sender = data.get("from")
            if data.get("type") in ("announce", "signal") and isinstance(sender, str):
                self._bind(subscriber, topic, sender)
        # While its seat is being claimed, who else holds the room is not known yet: fan out.
        elsewhere = self.has_members_elsewhere(topic) or topic in subscriber.claiming
        if self._deliver(subscriber, topic, data, relayed, now) and elsewhere:
            self._commands.append(Fanout(topic, relayed))

    def _deliver(
        self,
        sender: _Subscriber | None,
        topic: str,
        data: object,
        relayed: str,
        now: float | None,
    ) -> bool:
        """Route a publish to our subscribers (``sender``: the local one it came from, None for
        one from elsewhere); True when other servers may have recipients for it too."""
        members = self._topics.get(topic, {})
        size = frame_size(relayed)
        limit = self.settings.send_queue_bytes
        relayed_kind = _kind_of(data)
        if isinstance(data, dict) and data.get("type") == "signal" and "to" in data:
            target = data.get("to")
            conn = self._bound.get(topic, {}).get(target) if isinstance(target, str) else None
            if conn is None:
                # Elsewhere, or ordinary churn (the peer just left): dropped here, as clients
                # drop strangers'.
                logger.debug("= signal to unknown %s in %s", short(target), short(topic))
                return True
            if self._subscribers[conn].backlog + size <= limit:
                self._queue(self._subscribers[conn], relayed, size)
                self.tally.relayed[relayed_kind] += 1
            elif sender is not None and now is not None:
                # The target is behind: its sender hears so, nobody is dropped.
                reason = f"peer {short(target)} has too much waiting; retry"
                self._refuse(sender, now, "target-busy", reason)
            return False
        for conn, member in members.items():
            if sender is not None and conn == sender.conn:  # y-webrtc ignores its own anyway
                continue
            if member.backlog + size > limit:
                # Announcements are repeated by y-webrtc; one skipped costs a member nothing.
                logger.debug("= publish to busy y-webrtc connection %d skipped", conn)
                continue
            self._queue(member, relayed, size)
            self.tally.relayed[relayed_kind] += 1
        return True

    def _bind(self, subscriber: _Subscriber, topic: str, peer_id: str) -> None:
        """``peer_id`` speaks through this connection in ``topic`` (the latest publisher wins)."""
        if not 0 < len(peer_id) <= _MAX_ID_LENGTH:
            return
        bound = self._bound.setdefault(topic, {})
        previous = bound.get(peer_id)
        if previous == subscriber.conn:
            return
        if previous is not None:
            self._subscribers[previous].topics[topic].remove(peer_id)
        ids = subscriber.topics[topic]
        ids.append(peer_id)
        bound[peer_id] = subscriber.conn
        if len(ids) > _MAX_IDS_PER_SUBSCRIPTION:
            del bound[ids.pop(0)]

    # -- helpers ------------------------------------------------------------------------------

    def _send(self, subscriber: _Subscriber, message: TopicMessage) -> None:
        frame = encode_topic_message(message)
        self._queue(subscriber, frame, frame_size(frame))

    def _queue(self, subscriber: _Subscriber, frame: str, size: int) -> None:
        subscriber.backlog += size
        self._outgoing.append((subscriber.conn, frame))

    def _refuse(self, subscriber: _Subscriber, now: float, code: str, reason: str) -> bool:
        """Say no; False when that was one refusal too many and the connection is closed."""
        # The reason may quote the peer's input (a decoder's complaint): keep it short.
        reason = cut(reason)
        self.tally.refusals[code] += 1
        logger.info(
            "! y-webrtc connection %d refused (%s): %s",
            subscriber.conn,
            code,
            reason,
            extra=log_fields("refused", connection=subscriber.conn, code=code),
        )
        close = subscriber.limits.refused(code, now, _NOT_COUNTED.get(code, 1.0))
        if close is not None:
            self._close(subscriber, *close)
            return False
        self._send(subscriber, Error(code, reason))
        return True

    def _close(self, subscriber: _Subscriber, code: int, reason: str) -> None:
        self._closing.append((subscriber.conn, code, reason))
        self.disconnect(subscriber.conn)


def _kind_of(data: object) -> str:
    """A published payload's kind for ``Tally.relayed``: a plaintext room's ``type`` when it is
    one y-webrtc sends, "sealed" for a password room's encrypted string, else "other"."""
    if isinstance(data, str):
        return "sealed"
    kind = data.get("type") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) and kind in ("announce", "signal") else "other"


def _tokens_of(path: str) -> tuple[str, ...]:
    """The ``token`` query parameters of a request path."""
    try:
        query = parse_qsl(urlsplit(path).query, max_num_fields=64)
    except ValueError:
        return ()
    tokens = [v for k, v in query if k == "token" and 0 < len(v) <= _MAX_TOKEN_LENGTH]
    return tuple(tokens[:_MAX_TOKENS])
