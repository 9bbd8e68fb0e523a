"""What a host (an editor) hears from its peer: links, sync, signaling, congestion, presence.

The mesh, the signaling client and the awareness already know these facts; ``HostEvents``
turns their changes into events in the past tense and queues them for each stream that
``Peer.events()`` handed out, so an editor reacts instead of polling. Everything runs on
the peer's event loop (``crdtsync.threaded`` carries it to other threads).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import pycrdt

if TYPE_CHECKING:
    from crdtsync.mesh import Mesh

__all__ = [
    "DEFAULT_MAX_QUEUED",
    "CongestionChanged",
    "ConnectionState",
    "EventStream",
    "HostEvent",
    "HostEvents",
    "PeerLinked",
    "PeerUnlinked",
    "PresenceChanged",
    "SignalingConnected",
    "SignalingLost",
    "Synced",
]

logger = logging.getLogger(__name__)

# Events a stream keeps for a host that does not read; past that the oldest go (logged).
# Far above what a room produces between two redraws; state is always in Peer's properties.
DEFAULT_MAX_QUEUED = 1000


@dataclass(frozen=True, slots=True)
class PeerLinked:
    """A link to ``peer_id`` opened."""

    peer_id: str


@dataclass(frozen=True, slots=True)
class PeerUnlinked:
    """The link to ``peer_id`` closed (it left, died, or was replaced)."""

    peer_id: str


@dataclass(frozen=True, slots=True)
class Synced:
    """Step 2 arrived from every linked peer: ``peers`` (the document holds what they hold)."""

    peers: frozenset[str]


@dataclass(frozen=True, slots=True)
class SignalingConnected:
    """The signaling server is reachable again: new peers can be found."""


@dataclass(frozen=True, slots=True)
class SignalingLost:
    """The signaling server went away; open links go on, and the peer reconnects."""


@dataclass(frozen=True, slots=True)
class CongestionChanged:
    """The set of linked peers whose link holds updates back changed (see Peer.congested)."""

    congested: frozenset[str]


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """Remote presence in document ``doc_id`` changed: awareness client ids added, updated,
    removed (y-protocols)."""

    added: tuple[int, ...]
    updated: tuple[int, ...]
    removed: tuple[int, ...]
    doc_id: str = "default"


HostEvent = (
    PeerLinked
    | PeerUnlinked
    | Synced
    | SignalingConnected
    | SignalingLost
    | CongestionChanged
    | PresenceChanged
)


class ConnectionState(enum.Enum):
    """What a status line says: linked to someone, in the room alone, or cut off."""

    LINKED = "linked"  # at least one peer linked
    CONNECTING = "connecting"  # the room is reachable, no peer linked yet
    OFFLINE = "offline"  # no peer linked and no signaling server reachable


class EventStream:
    """An async iterator of ``HostEvent``; it ends when the peer closes or on ``aclose()``.

    Queued from the moment it is made, so nothing is missed between ``peer.events()`` and
    the first ``async for``.
    """

    def __init__(self, source: HostEvents, max_queued: int) -> None:
        self._source = source
        self._queue: deque[HostEvent] = deque()
        self._max_queued = max_queued
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self.dropped = 0  # events dropped because the host did not read

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> HostEvent:
        while not self._queue:
            if self._ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    async def aclose(self) -> None:
        """Stop receiving events; queued ones are still handed out, then the stream ends."""
        self._source.discard(self)
        self.end()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def push(self, event: HostEvent) -> None:
        if self._ended:
            return
        if len(self._queue) >= self._max_queued:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1:
                logger.warning(
                    "! an event stream is not read: dropping its oldest events (max %d queued)",
                    self._max_queued,
                )
        self._queue.append(event)
        self._wake()

    def end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class HostEvents:
    """Feeds event streams from the mesh's changes, the signaling client and the awareness.

    ``signaling_connected`` is None for a transport without a signaling server (the
    simulated network): its room is always reachable.
    """

    def __init__(self, mesh: Mesh, *, signaling_connected: bool | None) -> None:
        self._mesh = mesh
        self._signaling = signaling_connected
        self._streams: set[EventStream] = set()
        self._peers: frozenset[str] = frozenset()
        self._synced_with: frozenset[str] = frozenset()
        self._congested: frozenset[str] = frozenset()
        self._diff_pending: asyncio.Handle | None = None
        self._closed = False
        mesh.on_change = self.mesh_changed
        self._presences: dict[str, tuple[pycrdt.Awareness, str]] = {}  # doc id: subscription

    @property
    def connection(self) -> ConnectionState:
        if self._mesh.peers:
            return ConnectionState.LINKED
        if self._signaling is False:
            return ConnectionState.OFFLINE
        return ConnectionState.CONNECTING

    def stream(self, max_queued: int = DEFAULT_MAX_QUEUED) -> EventStream:
        stream = EventStream(self, max_queued)
        if self._closed:
            stream.end()
        else:
            self._streams.add(stream)
        return stream

    def discard(self, stream: EventStream) -> None:
        self._streams.discard(stream)

    def close(self) -> None:
        """Report the last changes, then end every stream; idempotent."""
        if self._closed:
            return
        self._diff()
        self._closed = True
        self._mesh.on_change = None
        for doc_id in list(self._presences):
            self.unwatch_presence(doc_id)
        for stream in self._streams:
            stream.end()
        self._streams.clear()

    # -- inputs -------------------------------------------------------------------------------

    def mesh_changed(self) -> None:
        """The mesh changed (links, sync, congestion): compare once, at the end of this tick,
        so a burst of changes costs one comparison and every change is already in place."""
        if self._diff_pending is None and not self._closed:
            self._diff_pending = asyncio.get_running_loop().call_soon(self._diff)

    def watch_presence(self, doc_id: str, awareness: pycrdt.Awareness) -> None:
        """Report remote presence changes in document ``doc_id`` from now on."""
        self.unwatch_presence(doc_id)
        if not self._closed:
            subscription = awareness.observe(
                lambda topic, change: self._presence_changed(doc_id, topic, change)
            )
            self._presences[doc_id] = (awareness, subscription)

    def unwatch_presence(self, doc_id: str) -> None:
        """Stop reporting presence in ``doc_id`` (it closed); nothing if not watched."""
        watched = self._presences.pop(doc_id, None)
        if watched is not None:
            awareness, subscription = watched
            awareness.unobserve(subscription)

    def signaling_changed(self, connected: bool) -> None:
        """The signaling client connected or lost its server."""
        if self._closed or connected == self._signaling:
            return
        self._signaling = connected
        self._publish(SignalingConnected() if connected else SignalingLost())

    # -- internals ----------------------------------------------------------------------------

    def _diff(self) -> None:
        if self._diff_pending is not None:
            self._diff_pending.cancel()
            self._diff_pending = None
        if self._closed:
            return
        peers = self._mesh.peers
        for peer_id in sorted(peers - self._peers):
            self._publish(PeerLinked(peer_id))
        for peer_id in sorted(self._peers - peers):
            self._publish(PeerUnlinked(peer_id))
        self._peers = peers
        synced_with = peers if peers and self._mesh.synced else frozenset()
        if synced_with - self._synced_with:  # newly synced peers (a smaller set is no news)
            self._publish(Synced(synced_with))
        self._synced_with = synced_with
        congested = self._mesh.congested
        if congested != self._congested:
            self._congested = congested
            self._publish(CongestionChanged(congested))

    def _presence_changed(
        self, doc_id: str, topic: str, change: tuple[dict[str, Any], Any]
    ) -> None:
        diff, origin = change
        if topic != "change" or origin == "local" or self._closed:
            return
        added, updated, removed = (tuple(diff[key]) for key in ("added", "updated", "removed"))
        self._publish(PresenceChanged(added, updated, removed, doc_id))

    def _publish(self, event: HostEvent) -> None:
        logger.debug("= host event %s", event)
        for stream in list(self._streams):
            stream.push(event)
