"""The core of one link to a Yjs peer in a y-webrtc room: raw y-protocols frames, sans I/O.

Same shape as the native core (``link.py``), so the mesh drives both alike, but the wire is
y-webrtc's (y-webrtc ``WebrtcConn``): no envelope, no HELLO, no heartbeat, no chunking. A
frame is ``varUint(messageType)`` + body: sync (step 1, step 2, update), awareness, query
awareness, and broadcast-channel peer ids (ignored). Yjs peers drop anything over 262,144
bytes without a word, so larger updates go out as several valid updates that each fit.
Whatever a Yjs peer sends, nothing raises: a frame we cannot use is logged and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from crdtsync.errors import ConfigError, LocalProtocolError, ProtocolError
from crdtsync.protocol.budget import TokenBucket
from crdtsync.protocol.events import (
    AwarenessQueried,
    AwarenessReceived,
    Event,
    HelloReceived,
    LinkClosed,
    SyncCompleted,
)
from crdtsync.protocol.link import LinkState
from crdtsync.protocol.relay import Sources
from crdtsync.protocol.sync import DocumentAccess, SyncSession, SyncState
from crdtsync.protocol.ymessages import (
    SyncType,
    awareness_message,
    parse_awareness_message,
    parse_sync_message,
    read_var_uint,
    sync_step2,
    sync_update,
)
from crdtsync.protocol.ysplit import split_update

__all__ = ["YWEBRTC_MAX_MESSAGE_SIZE", "YMessageType", "YWebrtcLinkProtocol", "YWebrtcLinkSettings"]

logger = logging.getLogger(__name__)

# libwebrtc and aiortc both advertise a=max-message-size:262144, and y-webrtc neither
# chunks nor reports a failed send: a bigger frame is lost without a trace.
YWEBRTC_MAX_MESSAGE_SIZE = 262_144
# A sync frame's header: message type, sync type and a varuint length of at most 5 bytes.
_SYNC_HEADER = 8


class YMessageType(IntEnum):
    """First varuint of a y-webrtc frame (y-webrtc ``WebrtcConn``, y-protocols)."""

    SYNC = 0
    AWARENESS = 1
    QUERY_AWARENESS = 3
    BC_PEER_ID = 4  # only meant for BroadcastChannel; we never take part in one


@dataclass(frozen=True, slots=True)
class YWebrtcLinkSettings:
    """Limits of one link to a Yjs peer; every default says where it comes from."""

    max_message_size: int = YWEBRTC_MAX_MESSAGE_SIZE
    # Flood guard, as on native links: a typist batched per tick sends a few hundred a second.
    max_messages_per_second: float = 2000.0
    message_burst: int = 10_000

    def __post_init__(self) -> None:
        if self.max_message_size < 4096:
            raise ConfigError(
                f"max_message_size must be at least 4096 (got {self.max_message_size})"
            )
        if self.max_messages_per_second <= 0 or self.message_burst < 1:
            raise ConfigError(
                "need max_messages_per_second > 0 and message_burst >= 1 "
                f"(got {self.max_messages_per_second}, {self.message_burst})"
            )


class YWebrtcLinkProtocol:
    """Sans-I/O core of one link to a Yjs peer; one instance per connection, never reused."""

    def __init__(
        self,
        local_id: str,
        documents: Mapping[str, DocumentAccess],
        *,
        expected_peer: str,
        settings: YWebrtcLinkSettings | None = None,
    ) -> None:
        if len(documents) != 1:
            raise LocalProtocolError("a y-webrtc link carries exactly one document")
        self.local_id = local_id
        self.remote_id: str | None = None
        self.expected_peer = expected_peer
        self.settings = settings or YWebrtcLinkSettings()
        self.state = LinkState.OPENING
        self.close_code: int | None = None
        self.close_reason = ""
        self.dropped_frames = 0  # frames a Yjs peer sent that we could not use
        self.round_trip_time: float | None = None  # y-webrtc has no heartbeat to time
        ((self._doc_id, document),) = documents.items()
        self._session = SyncSession(document, origin=self)
        self._synced = False
        self._outgoing: list[bytes] = []
        self._events: list[Event] = []
        self._flood_guard = TokenBucket(
            self.settings.max_messages_per_second, self.settings.message_burst
        )

    def __repr__(self) -> str:
        return f"<YWebrtcLinkProtocol {self.local_id}->{self.expected_peer} {self.state.value}>"

    # -- local intent -------------------------------------------------------------------------

    def start(self, now: float, *, sync: bool = True) -> None:
        """The data channel is open: send step 1 (unless ``sync=False``); then drain.

        y-webrtc has no handshake, so the link is open at once (a ``HelloReceived`` says so).
        """
        if self.state is not LinkState.OPENING:
            raise LocalProtocolError("link already started")
        self.state = LinkState.OPEN
        self.remote_id = self.expected_peer
        self._events.append(HelloReceived(self.expected_peer, frozenset()))
        if sync:
            self.resync(self._doc_id)

    def send_update(self, doc_id: str, update: bytes, sources: Sources = None) -> None:
        """Queue a document update (local or relayed); then drain ``data_to_send()``. Its
        sources stay here: y-protocols has no place for them."""
        self._check_doc(doc_id)
        if self.state is LinkState.OPEN:
            self._send_sync(sync_update(update))

    def send_awareness(self, doc_id: str, update: bytes) -> None:
        """Queue a presence update (awareness update bytes); then drain ``data_to_send()``."""
        self._check_doc(doc_id)
        if self.state is not LinkState.OPEN:
            return
        message = awareness_message(update)
        if len(message) > self.settings.max_message_size:
            # Presence is renewed every 15 s; one that can never fit is not worth a broken link.
            logger.warning("! %r: awareness update of %d bytes dropped", self, len(message))
            return
        self._outgoing.append(message)

    def send_links(self, peer_ids: frozenset[str]) -> None:
        """y-webrtc peers do not announce their links: nothing to send."""

    def add_document(self, doc_id: str, document: DocumentAccess, *, sync: bool = True) -> None:
        """A y-webrtc room is one document: there is never another to add."""
        raise LocalProtocolError(f"a y-webrtc link carries one document, not also {doc_id!r}")

    def remove_document(self, doc_id: str, *, tell: bool = True) -> None:
        """Its one document goes when the link goes: there is nothing to remove apart."""
        raise LocalProtocolError(f"a y-webrtc link keeps its one document {self._doc_id!r}")

    def refuse_document(self, doc_id: str) -> None:
        """Never asked: y-webrtc frames name no document."""

    def request_resync(self, doc_id: str) -> None:
        """A Yjs peer cannot be asked. Nor need it be: with no neighbour lists, the mesh
        sends it every update."""
        self._check_doc(doc_id)

    def resync(self, doc_id: str) -> None:
        """Send step 1 (again), so the remote sends what we lack; then drain ``data_to_send()``."""
        self._check_doc(doc_id)
        if self.state is LinkState.OPEN:
            for message in self._session.start():
                self._send_sync(message)

    def start_sync(self, doc_id: str) -> None:
        """Send step 1 unless it went out already; then drain ``data_to_send()``."""
        self._check_doc(doc_id)
        if self._session.state is SyncState.NEW:
            self.resync(doc_id)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close (y-webrtc has no goodbye frame); then drain ``events_received()``."""
        if self.state is LinkState.CLOSED:
            return
        self.state = LinkState.CLOSED
        self.close_code = code
        self.close_reason = reason
        self._events.append(LinkClosed(code, reason, False))

    # -- input from the network and the clock --------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed one data-channel message; then drain ``data_to_send()``, ``events_received()``."""
        if self.state is not LinkState.OPEN:
            return
        if not self._count_message(now):
            return
        if not data:
            return  # y-webrtc answers a frame it cannot read with an empty one
        try:
            self._handle(data)
        except ProtocolError as exc:
            self.dropped_frames += 1
            logger.warning("! %r: dropped a %d-byte frame: %.200s", self, len(data), exc)

    def handle_timer(self, now: float) -> None:
        """Nothing runs on a timer: y-webrtc links have no heartbeat (ICE watches them)."""

    def get_timer(self) -> float | None:
        return None

    # -- output ---------------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Binary frames to write, in order, each at most ``max_message_size`` bytes."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    @property
    def synced(self) -> bool:
        """Whether step 2 arrived on this link."""
        return self.state is LinkState.OPEN and self._synced

    def carries(self, doc_id: str) -> bool:
        return doc_id == self._doc_id

    def settled(self, doc_id: str) -> bool:
        """Whether step 2 arrived for ``doc_id`` (a Yjs peer always holds the room's one)."""
        return doc_id == self._doc_id and self.synced

    # -- internals ------------------------------------------------------------------------------

    def _check_doc(self, doc_id: str) -> None:
        if doc_id != self._doc_id:
            raise LocalProtocolError(f"unknown document {doc_id!r} on this link")

    def _count_message(self, now: float) -> bool:
        if self._flood_guard.take(now):
            return True
        rate, burst = self.settings.max_messages_per_second, self.settings.message_burst
        logger.warning("! %r: flood, over %g messages/s", self, rate)
        self.close(4001, f"flood: over {rate:g} messages/s (bursts of {burst})")
        return False

    def _handle(self, data: bytes) -> None:
        kind, _ = read_var_uint(data, 0)
        if kind == YMessageType.SYNC:
            self._handle_sync(data)
        elif kind == YMessageType.AWARENESS:
            self._events.append(AwarenessReceived(self._doc_id, parse_awareness_message(data)))
        elif kind == YMessageType.QUERY_AWARENESS:
            self._events.append(AwarenessQueried(self._doc_id))
        elif kind != YMessageType.BC_PEER_ID:
            # y-webrtc answers an unknown type with an empty frame; silence is kinder.
            raise ProtocolError(f"unknown message type {kind}")

    def _handle_sync(self, message: bytes) -> None:
        sync_type, payload = parse_sync_message(message)
        if sync_type is SyncType.STEP2 and self._session.state is SyncState.NEW:
            # An unasked-for step 2 is still content: take it as an update.
            message = sync_update(payload)
        replies, completed = self._session.receive_message(message)
        for reply in replies:
            self._send_sync(reply)
        if completed:
            self._synced = True
            self._events.append(SyncCompleted(self._doc_id))

    def _send_sync(self, message: bytes) -> None:
        """Queue a sync frame, as several that each fit if it is too large for Yjs peers."""
        limit = self.settings.max_message_size
        if len(message) <= limit:
            self._outgoing.append(message)
            return
        sync_type, payload = parse_sync_message(message)
        if sync_type is SyncType.STEP1:
            logger.warning(
                "! %r: a %d-byte state vector cannot reach a Yjs peer", self, len(message)
            )
            return
        pieces = split_update(payload, limit - _SYNC_HEADER)
        logger.debug(
            "> %r: %s of %d bytes in %d pieces", self, sync_type.name, len(message), len(pieces)
        )
        # The last piece carries the step 2: Yjs calls the peer synced when step 2 arrives,
        # and by then it holds everything.
        last = sync_step2 if sync_type is SyncType.STEP2 else sync_update
        self._outgoing.extend(sync_update(piece) for piece in pieces[:-1])
        self._outgoing.append(last(pieces[-1]))
