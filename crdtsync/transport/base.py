"""What the mesh needs of a transport: links to peers, and a room to find them in.

A ``Connector`` joins one room, reports who else is there, dials peers and accepts their
dials; each connection is a ``Link``, a reliable ordered message channel (a WebRTC data
channel, or a simulated one). The mesh implements ``LinkListener``. Nothing here knows the
protocol: links carry opaque messages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

from crdtsync.transport.stats import CandidatePath

__all__ = ["Connector", "Link", "LinkListener"]


class Link(ABC):
    """One reliable, ordered message channel to one remote peer."""

    def __init__(self, remote_id: str, *, initiator: bool) -> None:
        self.remote_id = remote_id
        self.initiator = initiator  # whether this side dialed
        self.low_water = 0

    def set_low_water(self, amount: int) -> None:
        """Report ``link_drained`` whenever ``buffered_amount`` falls from above ``amount`` to
        ``amount`` or below (a data channel's ``bufferedAmountLowThreshold``)."""
        self.low_water = amount

    @abstractmethod
    def send(self, data: bytes) -> None:
        """Queue one message; never blocks (see ``buffered_amount`` for backpressure)."""

    @property
    @abstractmethod
    def buffered_amount(self) -> int:
        """Bytes queued but not yet handed to the network."""

    @property
    def path(self) -> CandidatePath | None:
        """The candidate pair the link took (None on transports without ICE)."""
        return None

    @abstractmethod
    async def aclose(self) -> None:
        """Close the channel; idempotent. The listener hears no more of this link."""


class LinkListener(Protocol):
    """Callbacks a connector makes; all are called on the event loop, never re-entrantly."""

    def members_changed(self, members: frozenset[str]) -> None:
        """The other peers in the room are now ``members``."""

    def link_opened(self, link: Link) -> None:
        """A link is open (dialed by us, or accepted from the remote)."""

    def link_failed(self, remote_id: str, reason: str) -> None:
        """A dial to ``remote_id`` did not succeed."""

    def data_received(self, link: Link, data: bytes) -> None:
        """One message arrived on ``link``."""

    def link_drained(self, link: Link) -> None:
        """``link``'s send buffer fell to its low-water mark (see ``Link.set_low_water``)."""

    def link_lost(self, link: Link, reason: str) -> None:
        """``link`` broke or the remote closed it."""


class Connector(ABC):
    """Joins one room for one peer, and opens links to the other peers in it."""

    @property
    @abstractmethod
    def local_id(self) -> str:
        """This peer's id in the room, given by the room (nobody picks their own)."""

    @abstractmethod
    async def start(self, listener: LinkListener) -> None:
        """Join the room; from now on the listener hears of members and links."""

    @abstractmethod
    def dial(self, remote_id: str) -> None:
        """Start opening a link; the outcome arrives as ``link_opened`` or ``link_failed``."""

    @abstractmethod
    async def aclose(self) -> None:
        """Leave the room and close every link; idempotent."""
