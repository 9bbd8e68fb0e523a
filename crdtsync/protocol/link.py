"""The core of one link to one remote peer: handshake, heartbeats, chunking and sync.

A plain object fed with ``receive_data()`` and local verbs, drained with ``data_to_send()``,
``events_received()`` and ``get_timer()``; the caller owns the clock (``now`` in seconds) and the
socket. Bad bytes from the peer never raise out of it: the link closes with a BYE that names
the cause, and a ``LinkClosed`` event says why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeAlias

from crdtsync.errors import ConfigError, LocalProtocolError, ProtocolError
from crdtsync.protocol.budget import TokenBucket
from crdtsync.protocol.chunks import Reassembler, batch_messages, split_frame
from crdtsync.protocol.events import (
    AwarenessReceived,
    DocumentAbsent,
    DocumentRequested,
    Event,
    HelloReceived,
    LinkClosed,
    LinksReceived,
    SyncCompleted,
)
from crdtsync.protocol.frames import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_LINK_IDS,
    Absent,
    Awareness,
    Bye,
    Chunk,
    CloseCode,
    Frame,
    Hello,
    Links,
    Ping,
    Pong,
    Relay,
    Resync,
    Sync,
    decode_frame,
    decode_frames,
    encode_frame,
)
from crdtsync.protocol.relay import Sources
from crdtsync.protocol.sync import DocumentAccess, SyncSession, SyncState
from crdtsync.protocol.ymessages import awareness_message, parse_awareness_message

__all__ = ["Arrival", "LinkCore", "LinkProtocol", "LinkSettings", "LinkState"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Limits and timers of one link; every default says where it comes from."""

    # Largest frame once reassembled: far above a long document's whole state (the 105k
    # characters and 260k edits of the automerge-paper trace take 223 kB).
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    # Largest transport message: aiortc advertises 65,536-byte SCTP messages.
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    # aiortc alone notices a vanished peer only after ~34 s (ICE consent); we ping after a
    # second without traffic and give up after 5 s of silence: a dead peer goes in seconds.
    heartbeat_interval: float = 1.0
    dead_after: float = 5.0
    # A peer that connects but never says HELLO holds a slot: drop it like a dead one.
    hello_timeout: float = 5.0
    # Backpressure (applied by the mesh): once this many bytes wait in a link's send buffer,
    # updates for that link are held and merged into one, and go when the buffer drains to
    # send_buffer_low. A slow peer then costs one merged update, not an unbounded queue.
    send_buffer_high: int = 1 << 20
    send_buffer_low: int = 256 << 10
    # Flood guard: messages a peer may send per second, with bursts. A full-speed typist
    # batched per tick sends a few hundred a second; a 64 MiB state arrives as ~1,000 chunks.
    max_messages_per_second: float = 2000.0
    message_burst: int = 10_000

    def __post_init__(self) -> None:
        if not 0 <= self.send_buffer_low < self.send_buffer_high:
            raise ConfigError(
                "need 0 <= send_buffer_low < send_buffer_high "
                f"(got {self.send_buffer_low}, {self.send_buffer_high})"
            )
        if self.max_messages_per_second <= 0 or self.message_burst < 1:
            raise ConfigError(
                "need max_messages_per_second > 0 and message_burst >= 1 "
                f"(got {self.max_messages_per_second}, {self.message_burst})"
            )


# The frames that speak of one document, routed to its session.
DocumentFrame: TypeAlias = Sync | Relay | Awareness | Resync


class LinkState(Enum):
    OPENING = "opening"  # our HELLO is out, theirs has not arrived
    OPEN = "open"
    CLOSED = "closed"


class LinkCore(Protocol):
    """What the mesh drives on every link, whatever the dialect (native or y-webrtc)."""

    local_id: str
    remote_id: str | None
    state: LinkState
    round_trip_time: float | None  # seconds, of the last heartbeat answered (None: none yet)

    @property
    def synced(self) -> bool: ...
    def carries(self, doc_id: str) -> bool: ...
    def settled(self, doc_id: str) -> bool: ...
    def start(self, now: float, *, sync: bool = True) -> None: ...
    def add_document(self, doc_id: str, document: DocumentAccess, *, sync: bool = True) -> None: ...
    def remove_document(self, doc_id: str, *, tell: bool = True) -> None: ...
    def refuse_document(self, doc_id: str) -> None: ...
    def send_update(self, doc_id: str, update: bytes, sources: Sources = ...) -> None: ...
    def send_awareness(self, doc_id: str, update: bytes) -> None: ...
    def send_links(self, peer_ids: frozenset[str]) -> None: ...
    def resync(self, doc_id: str) -> None: ...
    def request_resync(self, doc_id: str) -> None: ...
    def start_sync(self, doc_id: str) -> None: ...
    def close(self, code: int = ..., reason: str = ...) -> None: ...
    def receive_data(self, data: bytes, now: float) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def data_to_send(self) -> list[bytes]: ...
    def events_received(self) -> list[Event]: ...


@dataclass(frozen=True, slots=True)
class Arrival:
    """The origin of what a link applies to a document: the link, and the sources the update
    named (None: not known, as for a step 2), which the mesh relays it by."""

    link: LinkCore
    sources: Sources


class LinkProtocol:
    """Sans-I/O core of one link; one instance per connection, never reused."""

    def __init__(
        self,
        local_id: str,
        documents: Mapping[str, DocumentAccess],
        *,
        expected_peer: str | None = None,
        capabilities: frozenset[str] = frozenset(),
        settings: LinkSettings | None = None,
    ) -> None:
        self.local_id = local_id
        self.expected_peer = expected_peer
        self.remote_id: str | None = None
        self.remote_capabilities: frozenset[str] = frozenset()
        self.settings = settings or LinkSettings()
        self.state = LinkState.OPENING
        self.close_code: int | None = None
        self.close_reason = ""
        self.round_trip_time: float | None = None
        self._ping_sent: tuple[int, float] | None = None  # the last PING's nonce and time
        self._capabilities = capabilities
        self._sessions = {
            doc_id: SyncSession(doc, origin=self) for doc_id, doc in documents.items()
        }
        self._settled: set[str] = set()  # step 2 arrived, or the remote said ABSENT
        self._absent: set[str] = set()  # documents the remote said ABSENT for
        # Frames for documents this link does not carry, until the adapter adds or refuses
        # them (it answers each DocumentRequested before it feeds the next message).
        self._requested: dict[str, list[DocumentFrame]] = {}
        self._reassembler = Reassembler(max_frame_size=self.settings.max_frame_size)
        self._outgoing: list[bytes] = []
        self._events: list[Event] = []
        self._next_message_id = 0
        self._next_nonce = 0
        self._started = False
        self._hello_queued = False  # our HELLO waits in the outgoing queue
        self._last_received = 0.0
        self._next_ping = 0.0
        self._hello_deadline = 0.0
        self._flood_guard = TokenBucket(
            self.settings.max_messages_per_second, self.settings.message_burst
        )

    def __repr__(self) -> str:
        remote = self.remote_id or self.expected_peer
        return f"<LinkProtocol {self.local_id}->{remote} {self.state.value}>"

    # -- local intent -------------------------------------------------------------------------

    def start(self, now: float, *, sync: bool = True) -> None:
        """Say HELLO and send step 1 for every document; then drain ``data_to_send()``.

        With ``sync=False`` step 1 waits for :meth:`start_sync` (or for the remote's step 1
        to show it has nothing we lack); the link answers and takes updates meanwhile.
        """
        if self._started:
            raise LocalProtocolError("link already started")
        self._started = True
        self._last_received = now
        self._next_ping = now + self.settings.heartbeat_interval
        self._hello_deadline = now + self.settings.hello_timeout
        self._send(Hello(peer_id=self.local_id, capabilities=self._capabilities))
        self._hello_queued = True
        # Step 1 goes out right behind HELLO: the link is ordered, so the remote reads HELLO
        # first, and the sync saves a round trip.
        for doc_id in self._sessions if sync else ():
            self.resync(doc_id)

    def add_document(self, doc_id: str, document: DocumentAccess, *, sync: bool = True) -> None:
        """Carry one more document; then drain ``data_to_send()`` and ``events_received()``.

        On a started link step 1 goes out at once (with ``sync=False``, at
        :meth:`start_sync`); frames the remote sent for it meanwhile are handled now. A
        document unloaded and loaded again comes back this way too: its step 1 fetches what
        it missed, and a late step 2 from before is still welcome.
        """
        if doc_id in self._sessions:
            raise LocalProtocolError(f"document {doc_id!r} is on this link already")
        session = SyncSession(document, origin=self)
        self._sessions[doc_id] = session
        if self._started and sync:
            self.resync(doc_id)
        for frame in self._requested.pop(doc_id, ()):
            if self.state is LinkState.CLOSED:
                break
            try:
                self._handle_document(session, frame)
            except ProtocolError as exc:
                logger.warning("! %r: %s", self, exc)
                self.close(exc.close_code, str(exc))

    def remove_document(self, doc_id: str, *, tell: bool = True) -> None:
        """Stop carrying a document; with ``tell``, say ABSENT so the remote stops sending it
        (without: a document unloaded while still served; its frames come back as a
        ``DocumentRequested``)."""
        self._session(doc_id)
        del self._sessions[doc_id]
        self._settled.discard(doc_id)
        if doc_id in self._absent:
            self._absent.discard(doc_id)
        elif tell and self._started:
            self._say_absent(doc_id)

    def refuse_document(self, doc_id: str) -> None:
        """Answer a ``DocumentRequested``: we do not sync that document with this peer."""
        if doc_id in self._sessions:
            raise LocalProtocolError(f"document {doc_id!r} is on this link: remove it instead")
        self._requested.pop(doc_id, None)
        self._say_absent(doc_id)

    def send_update(self, doc_id: str, update: bytes, sources: Sources = None) -> None:
        """Queue a document update (local or relayed) holding the edits of ``sources``
        (None: not known); then drain ``data_to_send()``."""
        if self.state is LinkState.CLOSED or self._remote_lacks(doc_id):
            return
        for message in self._session(doc_id).send_update(update):
            if sources and len(sources) <= MAX_LINK_IDS:
                self._send(Relay(doc_id, message, sources))
            else:
                self._send(Sync(doc_id, message))

    def send_awareness(self, doc_id: str, update: bytes) -> None:
        """Queue a presence update (awareness update bytes); then drain ``data_to_send()``."""
        if self.state is not LinkState.CLOSED and not self._remote_lacks(doc_id):
            self._send(Awareness(doc_id, awareness_message(update)))

    def send_links(self, peer_ids: frozenset[str]) -> None:
        """Tell the remote which peers we have open links with; then drain ``data_to_send()``."""
        if self.state is not LinkState.CLOSED:
            self._send(Links(peer_ids))

    def request_resync(self, doc_id: str) -> None:
        """Ask the remote to send step 1 again, so that we send what it lacks; then drain
        ``data_to_send()``."""
        if self.state is not LinkState.CLOSED and not self._remote_lacks(doc_id):
            self._send(Resync(doc_id))

    def resync(self, doc_id: str) -> None:
        """Send step 1 (again), so the remote sends what we lack; then drain ``data_to_send()``.

        The mesh calls it after it lost a link: what was in flight on it may be gone.
        """
        if self.state is LinkState.CLOSED or self._remote_lacks(doc_id):
            return
        for message in self._session(doc_id).start():
            self._send(Sync(doc_id, message))

    def start_sync(self, doc_id: str) -> None:
        """Send step 1 unless it went out already (a link started with ``sync=False``); then
        drain ``data_to_send()``."""
        if self._session(doc_id).state is SyncState.NEW:
            self.resync(doc_id)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Say BYE and close; then drain ``data_to_send()`` and ``events_received()``."""
        if self.state is LinkState.CLOSED:
            return
        self._send(Bye(int(code), reason))
        self._closed(code, reason, by_remote=False)

    # -- input from the network and the clock --------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed one transport message; then drain ``data_to_send()`` and ``events_received()``."""
        if self.state is LinkState.CLOSED:
            return
        self._last_received = now
        # Whatever arrives shows the peer alive: ping only a link quiet for an interval. Of
        # two idle ends, the first to ping keeps the other from pinging.
        self._next_ping = max(self._next_ping, now + self.settings.heartbeat_interval)
        try:
            for frame in decode_frames(data, max_frame_size=self.settings.max_frame_size):
                if self.close_code is not None:  # a frame of the batch closed the link
                    break
                self._receive_frame(frame, now)
        except ProtocolError as exc:
            logger.warning("! %r: %s", self, exc)
            self.close(exc.close_code, str(exc))

    def _receive_frame(self, frame: Frame, now: float) -> None:
        self._count_message(now)  # frames, not messages: a batch is no way around the guard
        if isinstance(frame, Chunk):
            if self.state is LinkState.OPENING:
                raise ProtocolError("CHUNK before HELLO")
            whole = self._reassembler.feed(frame)
            if whole is None:
                return
            frame = decode_frame(whole, max_frame_size=self.settings.max_frame_size)
            if isinstance(frame, Chunk):
                raise ProtocolError("a reassembled frame is itself a CHUNK")
        if isinstance(frame, Pong):
            self._pong_received(frame.nonce, now)
        self._handle(frame)

    def handle_timer(self, now: float) -> None:
        """Run what is due at ``now``; then drain ``data_to_send()`` and ``events_received()``."""
        if self.state is LinkState.CLOSED or not self._started:
            return
        if self.state is LinkState.OPENING and now >= self._hello_deadline:
            self.close(CloseCode.TIMEOUT, f"no HELLO within {self.settings.hello_timeout} s")
            return
        if now >= self._last_received + self.settings.dead_after:
            silent = now - self._last_received
            self.close(CloseCode.TIMEOUT, f"no frame from the peer for {silent:.1f} s")
            return
        if now >= self._next_ping:
            self._next_ping = now + self.settings.heartbeat_interval
            self._next_nonce += 1
            self._ping_sent = (self._next_nonce, now)
            self._send(Ping(self._next_nonce))

    def get_timer(self) -> float | None:
        """The next time ``handle_timer()`` must run, or None once closed."""
        if self.state is LinkState.CLOSED or not self._started:
            return None
        deadline = min(self._next_ping, self._last_received + self.settings.dead_after)
        if self.state is LinkState.OPENING:
            deadline = min(deadline, self._hello_deadline)
        return deadline

    # -- output ---------------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Transport messages to write, in order (each at most ``max_message_size`` bytes);
        frames queued together travel back to back in as few messages as fit."""
        outgoing, self._outgoing = self._outgoing, []
        if self._hello_queued:  # alone, so that a peer of another version can refuse it
            self._hello_queued = False
            return outgoing[:1] + batch_messages(outgoing[1:], self.settings.max_message_size)
        return batch_messages(outgoing, self.settings.max_message_size)

    def events_received(self) -> list[Event]:
        """Events since the last call, in order."""
        events, self._events = self._events, []
        return events

    @property
    def synced(self) -> bool:
        """Whether every document on this link is settled (see :meth:`settled`)."""
        return self.state is LinkState.OPEN and len(self._settled) == len(self._sessions)

    def carries(self, doc_id: str) -> bool:
        """Whether this link syncs ``doc_id`` (the remote may still say ABSENT for it)."""
        return doc_id in self._sessions

    def settled(self, doc_id: str) -> bool:
        """Whether nothing more is owed from the remote for ``doc_id``: its step 2 arrived, or
        it said ABSENT (it does not sync that document with us)."""
        return self.state is LinkState.OPEN and doc_id in self._settled

    # -- internals ------------------------------------------------------------------------------

    def _count_message(self, now: float) -> None:
        if not self._flood_guard.take(now):
            rate, burst = self.settings.max_messages_per_second, self.settings.message_burst
            raise ProtocolError(
                f"flood: over {rate:g} messages/s (bursts of {burst})", close_code=CloseCode.POLICY
            )

    def _pong_received(self, nonce: int, now: float) -> None:
        """A PONG to our last PING times the round trip; others (late, forged) do not."""
        if self._ping_sent is not None and self._ping_sent[0] == nonce:
            self.round_trip_time = now - self._ping_sent[1]
            self._ping_sent = None

    def _session(self, doc_id: str) -> SyncSession:
        session = self._sessions.get(doc_id)
        if session is None:
            raise LocalProtocolError(f"unknown document {doc_id!r} on this link")
        return session

    def _remote_lacks(self, doc_id: str) -> bool:
        """Whether the remote said ABSENT for ``doc_id``; LocalProtocolError if not carried."""
        self._session(doc_id)
        return doc_id in self._absent

    def _say_absent(self, doc_id: str) -> None:
        if self.state is LinkState.OPEN:
            self._send(Absent(doc_id))

    def _send(self, frame: Frame) -> None:
        encoded = encode_frame(frame)
        if len(encoded) > self.settings.max_message_size:
            self._next_message_id += 1
            message_id = self._next_message_id
        else:
            message_id = 0
        self._outgoing.extend(
            split_frame(
                encoded, message_id=message_id, max_message_size=self.settings.max_message_size
            )
        )

    def _closed(self, code: int, reason: str, *, by_remote: bool) -> None:
        self.state = LinkState.CLOSED
        self.close_code = code
        self.close_reason = reason
        self._events.append(LinkClosed(code, reason, by_remote))

    def _handle(self, frame: Frame) -> None:
        if isinstance(frame, Bye):
            self._closed(frame.code, frame.reason, by_remote=True)
            return
        if self.state is LinkState.OPENING:
            if not isinstance(frame, Hello):
                raise ProtocolError(f"{type(frame).__name__.upper()} before HELLO")
            self._handle_hello(frame)
            return
        if isinstance(frame, Hello):
            raise ProtocolError("a second HELLO on an open link")
        if isinstance(frame, Sync | Relay | Awareness | Resync):
            session = self._sessions.get(frame.doc_id)
            if session is not None:
                self._handle_document(session, frame)
            elif frame.doc_id in self._requested:
                self._requested[frame.doc_id].append(frame)
            else:
                self._requested[frame.doc_id] = [frame]
                self._events.append(DocumentRequested(frame.doc_id))
        elif isinstance(frame, Absent):
            if frame.doc_id in self._sessions and frame.doc_id not in self._absent:
                self._absent.add(frame.doc_id)
                self._settled.add(frame.doc_id)
                self._events.append(DocumentAbsent(frame.doc_id))
        elif isinstance(frame, Ping):
            self._send(Pong(frame.nonce))
        elif isinstance(frame, Links):
            self._events.append(LinksReceived(frame.peer_ids))
        # PONG only proves liveness, which receive_data already recorded.

    def _handle_hello(self, hello: Hello) -> None:
        if hello.peer_id == self.local_id:
            raise ProtocolError(f"the remote claims our own id {hello.peer_id!r}")
        if self.expected_peer is not None and hello.peer_id != self.expected_peer:
            raise ProtocolError(
                f"HELLO from {hello.peer_id!r} on the link to {self.expected_peer!r}"
            )
        self.remote_id = hello.peer_id
        self.remote_capabilities = hello.capabilities
        self.state = LinkState.OPEN
        self._events.append(HelloReceived(hello.peer_id, hello.capabilities))

    def _handle_document(self, session: SyncSession, frame: DocumentFrame) -> None:
        doc_id = frame.doc_id
        if isinstance(frame, Awareness):
            self._events.append(AwarenessReceived(doc_id, parse_awareness_message(frame.message)))
            return
        if isinstance(frame, Resync):
            self.resync(doc_id)
            return
        reopened = doc_id in self._absent
        if reopened:  # the remote opened it again (its step 1 comes first): sync afresh
            self._absent.discard(doc_id)
            self._settled.discard(doc_id)
            session.reset()
        sources = frame.sources if isinstance(frame, Relay) else None
        replies, completed = session.receive_message(frame.message, origin=Arrival(self, sources))
        for message in replies:
            self._send(Sync(doc_id, message))
        if reopened and session.state is SyncState.NEW:
            self.resync(doc_id)
        if completed:
            self._settled.add(doc_id)
            self._events.append(SyncCompleted(doc_id))
