"""The mesh's state for one link: the transport link, its core, its timer and its traffic.

The mesh moves bytes through it (``send``, ``receive``, counted) and keeps its timer at the
core's next deadline (``arm``); ``stats(now)`` is what ``Peer.link_stats()`` reports of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from crdtsync.errors import TransportError
from crdtsync.protocol.frames import CloseCode
from crdtsync.protocol.link import LinkCore
from crdtsync.protocol.relay import Sources
from crdtsync.transport.base import Link
from crdtsync.transport.stats import LinkStats

__all__ = ["MeshLink"]


class MeshLink:
    """The adapter's state for one link: the transport link, its core, its timer."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "deadline",
        "held",
        "held_sources",
        "link",
        "lost",
        "messages_received",
        "messages_sent",
        "neighbors",
        "opened_at",
        "protocol",
        "skipped",
        "timer",
    )

    def __init__(self, link: Link, protocol: LinkCore, opened_at: float) -> None:
        self.link = link
        self.opened_at = opened_at  # loop time
        self.messages_sent = self.messages_received = self.bytes_sent = self.bytes_received = 0
        self.protocol = protocol
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: float | None = None
        self.neighbors: frozenset[str] = frozenset()
        self.lost = False  # the transport link is gone: nothing more can be sent on it
        self.held: dict[str, list[bytes]] = {}  # by doc id: updates waiting for a drain
        self.held_sources: dict[str, Sources] = {}  # by doc id: whose edits they hold
        # Documents an update of went to other links but not this one, since we last asked
        # it to resync them.
        self.skipped: set[str] = set()

    def send(self, outgoing: list[bytes]) -> int:
        """Write what the core queued, unless the transport link is lost; a failed write
        loses it and closes the core. Returns the bytes written."""
        written = 0
        if self.lost:
            return written
        try:
            for data in outgoing:
                self.link.send(data)
                written += len(data)
                self.messages_sent += 1
                self.bytes_sent += len(data)
        except TransportError as exc:
            self.lost = True
            self.protocol.close(CloseCode.GOING_AWAY, f"send failed: {exc}")
        return written

    def receive(self, data: bytes, now: float) -> None:
        """Feed the core one transport message that arrived at loop time ``now``."""
        self.messages_received += 1
        self.bytes_received += len(data)
        self.protocol.receive_data(data, now)

    def arm(self, loop: asyncio.AbstractEventLoop, on_timer: Callable[[MeshLink], None]) -> None:
        """Set the timer to the core's next deadline, ``on_timer(self)`` when it fires."""
        deadline = self.protocol.get_timer()
        if deadline == self.deadline:
            return
        if deadline is not None and self.deadline is not None and self.deadline < deadline:
            return  # it fires early, finds nothing due and re-arms: cheaper than per message
        self.disarm()
        self.deadline = deadline
        self.timer = None if deadline is None else loop.call_at(deadline, on_timer, self)

    def disarm(self) -> None:
        """Cancel the timer (the link is gone)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def stats(self, now: float) -> LinkStats:
        """Its path, round-trip time and traffic, at loop time ``now``."""
        return LinkStats(
            remote_id=self.link.remote_id,
            path=self.link.path,
            round_trip_time=self.protocol.round_trip_time,
            messages_sent=self.messages_sent,
            messages_received=self.messages_received,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            linked_for=now - self.opened_at,
        )
