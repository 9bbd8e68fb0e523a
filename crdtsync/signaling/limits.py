"""Server settings and the per-connection limits every signaling core applies the same way.

Both cores (``Router`` for the native protocol, ``TopicRouter`` for y-webrtc) give each
connection a ``ConnectionLimits``: a token bucket for messages per second, a count of refused
requests, and the time it was last heard from. The refusal codes and reasons live here too,
so a client over a limit reads the same words whichever protocol it speaks.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass

from crdtsync.errors import ConfigError

__all__ = ["ConnectionLimits", "Refusal", "SignalingSettings", "short"]

# A refused request: a stable code and a sentence saying why.
Refusal = tuple[str, str]

_repr = reprlib.Repr()
_repr.maxstring = 100
_repr.maxother = 100


def short(value: object) -> str:
    """``repr(value)`` cut to ~100 characters, for log lines and refusals that echo input."""
    return _repr.repr(value)


@dataclass(frozen=True, slots=True)
class SignalingSettings:
    """Server limits; every default says where it comes from."""

    # An SDP offer with a few candidates is a few kB; 64 KiB leaves room and bounds memory.
    max_message_size: int = 65536
    max_rooms_per_connection: int = 16
    # A full mesh of 64 peers is 2,016 links: far past where max_conns makes it partial.
    max_peers_per_room: int = 64
    # Setting up a link is a handful of messages; a burst covers joining a busy room.
    messages_per_second: float = 50.0
    burst: int = 200
    # Refusals a client may collect before it is disconnected.
    max_violations: int = 5
    # Clients ping every 15 s; three missed pings and the connection is dropped.
    idle_timeout: float = 45.0
    # With a secret, joining needs a token (see tokens.py).
    token_secret: bytes | None = None
    # Bytes queued for one client before it counts as too slow and is dropped: 16 full-size
    # messages, a room's worth of offers; a client that reads keeps its queue near empty.
    send_queue_bytes: int = 1 << 20
    # A send that cannot hand its frame to the kernel for this long means a peer that stopped
    # reading: its TCP connection is aborted.
    send_timeout: float = 10.0
    # After a close frame, how long the peer has to answer before the TCP connection is
    # aborted (websockets' own default is 10 s; a client that is being dropped gets less).
    close_timeout: float = 2.0

    def __post_init__(self) -> None:
        for name in ("max_message_size", "max_rooms_per_connection", "max_peers_per_room", "burst"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("messages_per_second", "idle_timeout", "send_timeout", "close_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive (got {getattr(self, name)})")
        if self.send_queue_bytes < self.max_message_size:
            raise ConfigError(
                f"send_queue_bytes ({self.send_queue_bytes}) must hold at least one message"
                f" of max_message_size ({self.max_message_size})"
            )


class ConnectionLimits:
    """One connection's rate, refusals and last-seen time; the cores ask it, then act."""

    def __init__(self, settings: SignalingSettings, now: float) -> None:
        self.settings = settings
        self.last_seen = now
        self.violations = 0
        self._tokens = float(settings.burst)
        self._refilled_at = now

    def receive(self, now: float) -> Refusal | None:
        """A message arrived at ``now``: note it, take a token; a refusal when over the rate."""
        self.last_seen = now
        rate = self.settings.messages_per_second
        self._tokens = min(
            float(self.settings.burst), self._tokens + (now - self._refilled_at) * rate
        )
        self._refilled_at = now
        if self._tokens < 1.0:
            return ("rate-limited", f"over {rate:g} messages/s")
        self._tokens -= 1.0
        return None

    def join(self, room: str, joined: int, members: int) -> Refusal | None:
        """May the connection, already in ``joined`` rooms, enter ``room`` of ``members``?"""
        if joined >= self.settings.max_rooms_per_connection:
            return ("too-many-rooms", f"at most {self.settings.max_rooms_per_connection} rooms")
        if members >= self.settings.max_peers_per_room:
            return ("room-full", f"room {short(room)} has {members} peers, the most allowed")
        return None

    def refused(self, code: str) -> tuple[int, str] | None:
        """Count a refusal; the close (code, reason) once the client has had too many."""
        self.violations += 1
        if self.violations > self.settings.max_violations:
            return (1008, f"too many refused requests (last: {code})")
        return None

    @property
    def idle_at(self) -> float:
        """When the connection counts as idle unless it says something first."""
        return self.last_seen + self.settings.idle_timeout

    def idle_close(self, now: float) -> tuple[int, str] | None:
        """The close (code, reason) when the connection is idle at ``now``."""
        if now >= self.idle_at:
            return (1001, f"idle for {self.settings.idle_timeout:g} s")
        return None
