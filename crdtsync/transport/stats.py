"""What each link is doing: the path it took, its round-trip time, what crossed it.

``Peer.link_stats()`` returns one ``LinkStats`` per linked remote peer. The path is the ICE
candidate pair the link selected (``host``, ``srflx``, ``prflx`` or ``relay`` on each end,
RFC 8445 section 5.1.1): ``relay`` means a TURN server carries the link. The mesh counts
messages and bytes; the round-trip time is that of our own heartbeats (PING to PONG), so it
is known once a quiet link has pinged at least once, and never for y-webrtc links.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CandidatePath", "LinkStats"]


@dataclass(frozen=True, slots=True)
class CandidatePath:
    """The selected candidate pair of a link: types and ``(host, port)`` on each end."""

    local_type: str
    local_address: tuple[str, int]
    remote_type: str
    remote_address: tuple[str, int]

    @property
    def relayed(self) -> bool:
        """Whether a TURN server carries the link (either end's candidate is a relay)."""
        return "relay" in (self.local_type, self.remote_type)

    def __str__(self) -> str:
        local, remote = self.local_address, self.remote_address
        return (
            f"{self.local_type} {local[0]}:{local[1]} -> {self.remote_type} {remote[0]}:{remote[1]}"
        )


@dataclass(frozen=True, slots=True)
class LinkStats:
    """One link, as seen from this peer."""

    remote_id: str
    path: CandidatePath | None  # None on transports without ICE (the simulated network)
    round_trip_time: float | None  # seconds, of the last heartbeat; None until one came back
    messages_sent: int
    messages_received: int
    bytes_sent: int
    bytes_received: int
    linked_for: float  # seconds since the link opened
