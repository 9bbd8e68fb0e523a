"""The mesh's state for one link: the transport link, its core, its timer and its traffic.

``stats(now)`` is what ``Peer.link_stats()`` reports of it.
"""

from __future__ import annotations

import asyncio

from crdtsync.protocol.link import LinkCore
from crdtsync.protocol.relay import NO_SOURCES, Sources
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
        self.held: list[bytes] = []  # updates waiting for a congested link to drain
        self.held_sources: Sources = NO_SOURCES  # whose edits they hold
        # An update went to other links but not this one since we last asked it to resync.
        self.skipped = False

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
