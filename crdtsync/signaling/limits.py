"""Server settings and the per-connection limits every signaling core applies the same way.

Both cores (``Router`` for the native protocol, ``TopicRouter`` for y-webrtc) give each
connection a ``ConnectionLimits``: token buckets for messages and bytes per second, a leaky
count of refused requests, and its deadlines (login, idle), kept in a ``DeadlineHeap``. The
adapter admits connections through ``Admission`` (per address and overall). The refusal codes
and reasons live here too, so a client over a limit reads the same words in either protocol.
"""

from __future__ import annotations

import heapq
import ipaddress
import reprlib
from collections.abc import Callable
from dataclasses import dataclass

from crdtsync.errors import ConfigError
from crdtsync.protocol.budget import TokenBucket

__all__ = [
    "Admission",
    "ConnectionLimits",
    "DeadlineHeap",
    "Refusal",
    "SignalingSettings",
    "address_key",
    "frame_size",
    "short",
]

# A refused request: a stable code and a sentence saying why.
Refusal = tuple[str, str]

_repr = reprlib.Repr()
_repr.maxstring = 100
_repr.maxother = 100

# A refusal's reason may quote input; the wire allows 1,024 characters, a log line a few hundred.
MAX_REASON = 200


def short(value: object) -> str:
    """``repr(value)`` cut to ~100 characters, for log lines and refusals that echo input."""
    return _repr.repr(value)


def cut(text: str, limit: int = MAX_REASON) -> str:
    """``text`` cut to ``limit`` characters, so echoed input never grows a line or a frame."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def frame_size(frame: bytes | str) -> int:
    """Bytes a frame holds in memory: an ASCII str one a character, any other up to four."""
    return len(frame) if isinstance(frame, bytes) or frame.isascii() else 4 * len(frame)


def address_key(host: str) -> str:
    """The key connection caps count by: the IPv4 address, or the IPv6 /64 (one subscriber's
    prefix; counting single IPv6 addresses would give one client 2**64 budgets)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host[:64]  # a Unix socket path or a name: count it as it is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True, slots=True)
class SignalingSettings:
    """Server limits; every default says where it comes from."""

    # An SDP offer with a few candidates is a few kB; 64 KiB leaves room and bounds memory.
    max_message_size: int = 65536
    # A peer process opens a handful of rooms; 16 covers an app with a room per open document.
    max_rooms_per_connection: int = 16
    # A full mesh of 64 peers is 2,016 links: far past where max_conns makes it partial.
    max_peers_per_room: int = 64
    # Setting up a link is a handful of messages; a burst covers joining a busy room.
    messages_per_second: float = 50.0
    burst: int = 200
    # Bytes received per second, whatever the message count: a room's worth of offers
    # (64 peers x ~4 KB) is one second's budget. Measured: 40 connections flooding at their
    # message rate relayed 140 MB/s and pushed another client's ping to 147 ms.
    bytes_per_second: float = 256 * 1024
    # 16 full-size messages at once, as send_queue_bytes holds: joining a busy room.
    byte_burst: int = 1 << 20
    # Refusals a client may collect before it is disconnected; a leaky bucket, so a
    # long-lived peer's occasional refusal never adds up to a disconnect.
    max_violations: int = 5
    # One refusal forgiven a minute: garbage at the message rate reaches the cap in well
    # under a second, an honest client's rare race (an expired token) is forgotten.
    violations_forgiven_per_second: float = 1 / 60
    # Clients ping every 15 s; three missed pings and the connection is dropped.
    idle_timeout: float = 45.0
    # hello..prove (native) or the first frame (y-webrtc) within this: two round trips take
    # well under a second even across continents, 5 s leaves room for a slow TLS handshake;
    # a connection that never logs in holds a socket no longer than this.
    login_timeout: float = 5.0
    # With a secret, joining needs a token (see tokens.py).
    token_secret: bytes | None = None
    # Bytes queued for one client, relayed by others, before the server refuses to relay
    # more to it ("target-busy", to the sender): 16 full-size messages, a room's worth of
    # offers; a client that reads keeps its queue near empty. The queue itself is capped at
    # twice this (the other half for the server's own small messages), a memory bound only
    # a client that stops reading reaches.
    send_queue_bytes: int = 1 << 20
    # A send that cannot hand its frame to the kernel for this long means a peer that stopped
    # reading: its TCP connection is aborted. The only way a slow reader is dropped.
    send_timeout: float = 10.0
    # After a close frame, how long the peer has to answer before the TCP connection is
    # aborted (websockets' own default is 10 s; a client that is being dropped gets less).
    close_timeout: float = 2.0
    # Connections from one address (an IPv6 /64): a household or office behind one NAT with
    # a few tabs each. Measured: one client opened 3,000 and locked everyone else out.
    max_connections_per_address: int = 64
    # Connections overall; each is a file descriptor, so the server also keeps under its
    # RLIMIT_NOFILE (Linux's default soft limit is 1,024: raise it to use this).
    max_connections: int = 4096
    # Peers one address may have in one room: a squatter from one machine takes at most half
    # a room of 64, while an office behind one NAT still fits. The full answer to squatting is
    # a join token bound to a peer id (tokens.py).
    max_joins_per_room_per_address: int = 32
    # The origins (scheme://host:port) clients dial, which login proofs must name. Empty: the
    # origin the request's Host header names, which stops a relay that dials honestly but
    # not one that forges Host; behind a proxy or a public name, set this.
    origins: tuple[str, ...] = ()
    # A refused connection is logged once per address per interval, not once per attempt.
    refusal_log_interval: float = 60.0

    def __post_init__(self) -> None:
        for name in (
            "max_message_size",
            "max_rooms_per_connection",
            "max_peers_per_room",
            "burst",
            "max_connections_per_address",
            "max_connections",
            "max_joins_per_room_per_address",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in (
            "messages_per_second",
            "bytes_per_second",
            "idle_timeout",
            "login_timeout",
            "send_timeout",
            "close_timeout",
            "refusal_log_interval",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive (got {getattr(self, name)})")
        if self.violations_forgiven_per_second < 0:
            raise ConfigError(
                "violations_forgiven_per_second must not be negative"
                f" (got {self.violations_forgiven_per_second})"
            )
        for name in ("send_queue_bytes", "byte_burst"):
            if getattr(self, name) < self.max_message_size:
                raise ConfigError(
                    f"{name} ({getattr(self, name)}) must hold at least one message"
                    f" of max_message_size ({self.max_message_size})"
                )


class ConnectionLimits:
    """One connection's rates, refusals and deadlines; the cores ask it, then act."""

    def __init__(self, settings: SignalingSettings, now: float, *, login: bool = True) -> None:
        self.settings = settings
        self.last_seen = now
        # None once logged in (or for a protocol without a login).
        self.login_by: float | None = now + settings.login_timeout if login else None
        self._violations = 0.0
        self._forgiven_at = now
        self._messages = TokenBucket(settings.messages_per_second, settings.burst, now)
        self._bytes = TokenBucket(settings.bytes_per_second, settings.byte_burst, now)

    def receive(self, now: float, size: int) -> Refusal | None:
        """A message of ``size`` bytes arrived at ``now``: note it, take tokens; a refusal when
        over the message or byte rate."""
        settings = self.settings
        self.last_seen = max(self.last_seen, now)
        if self._messages.level(now) < 1.0:
            return ("rate-limited", f"over {settings.messages_per_second:g} messages/s")
        if not self._bytes.take(now, size):
            return ("rate-limited", f"over {settings.bytes_per_second:g} bytes/s")
        self._messages.take(now)
        return None

    def logged_in(self) -> None:
        """The login finished: only the idle deadline is left."""
        self.login_by = None

    def join(self, room: str, joined: int, members: int, from_address: int) -> Refusal | None:
        """May the connection, already in ``joined`` rooms, enter ``room`` of ``members``, of
        whom ``from_address`` came from its address?"""
        settings = self.settings
        if joined >= settings.max_rooms_per_connection:
            return ("too-many-rooms", f"at most {settings.max_rooms_per_connection} rooms")
        if members >= settings.max_peers_per_room:
            return ("room-full", f"room {short(room)} has {members} peers, the most allowed")
        if from_address >= settings.max_joins_per_room_per_address:
            return (
                "address-crowded",
                f"room {short(room)} has {from_address} peers from this address, the most allowed",
            )
        return None

    def refused(self, code: str, now: float, weight: float = 1.0) -> tuple[int, str] | None:
        """Count a refusal of ``weight``; the close (code, reason) once there are too many.

        The count leaks ``violations_forgiven_per_second``: churn over hours never adds up.
        """
        forgiven = max(0.0, now - self._forgiven_at) * self.settings.violations_forgiven_per_second
        self._forgiven_at = max(self._forgiven_at, now)
        self._violations = max(0.0, self._violations - forgiven) + weight
        if self._violations > self.settings.max_violations:
            return (1008, f"too many refused requests (last: {code})")
        return None

    @property
    def violations(self) -> float:
        """Refusals counted, net of those forgiven by the last one (for tests and logs)."""
        return self._violations

    @property
    def idle_at(self) -> float:
        """When the connection counts as idle unless it says something first."""
        return self.last_seen + self.settings.idle_timeout

    @property
    def deadline(self) -> float:
        """The next deadline: login, then idle. It only ever moves later."""
        if self.login_by is not None:
            return min(self.login_by, self.idle_at)
        return self.idle_at

    def expired(self, now: float) -> tuple[int, str] | None:
        """The close (code, reason) when a deadline has passed at ``now``."""
        if self.login_by is not None and now >= self.login_by:
            return (1008, f"login not finished within {self.settings.login_timeout:g} s")
        if now >= self.idle_at:
            return (1001, f"idle for {self.settings.idle_timeout:g} s")
        return None


class DeadlineHeap:
    """Connections by deadline: the next timer in O(1) amortised, a message in O(log n).

    Each connection has one entry, pushed at connect. Its deadline only moves later, so an
    entry is never late, only stale (early): a message does not touch the heap; ``next`` and
    ``pop_due`` put a stale entry at the top back with the connection's real deadline, and
    drop entries of closed connections (lazy update and deletion).
    """

    def __init__(self, limits_of: Callable[[int], ConnectionLimits | None]) -> None:
        # The connection's limits (its real deadline), or None once it is closed.
        self._limits_of = limits_of
        self._heap: list[tuple[float, int]] = []

    def push(self, deadline: float, conn: int) -> None:
        heapq.heappush(self._heap, (deadline, conn))

    def next(self) -> float | None:
        """The earliest real deadline."""
        heap = self._heap
        while heap:
            stored, conn = heap[0]
            limits = self._limits_of(conn)
            if limits is None:
                heapq.heappop(heap)
            elif limits.deadline == stored:
                return stored
            else:
                heapq.heapreplace(heap, (limits.deadline, conn))
        return None

    def pop_due(self, now: float) -> list[int]:
        """The connections whose real deadline is due at ``now``, taken off the heap."""
        due = []
        while (deadline := self.next()) is not None and deadline <= now:
            due.append(heapq.heappop(self._heap)[1])
        return due

    def expire(self, now: float) -> list[tuple[int, int, str]]:
        """The connections due at ``now``, each with the close (code, reason) it gets."""
        closes = []
        for conn in self.pop_due(now):
            limits = self._limits_of(conn)
            expired = None if limits is None else limits.expired(now)
            if expired is not None:
                closes.append((conn, *expired))
            elif limits is not None:  # cannot happen (it was due); never lose a timer
                self.push(limits.deadline, conn)
        return closes

    def __len__(self) -> int:
        return len(self._heap)


class Admission:
    """Open connections per address and overall, and when each refusal may next be logged.

    Sans I/O: the adapter asks ``admit`` before the WebSocket handshake completes (over a cap:
    HTTP 503 at once) and calls ``release`` when the TCP connection is gone.
    """

    # Addresses remembered for log throttling before the oldest are forgotten.
    _MAX_LOGGED = 4096

    def __init__(self, settings: SignalingSettings, *, max_connections: int | None = None) -> None:
        self.settings = settings
        self.max_connections = max_connections or settings.max_connections
        self.count = 0
        self._by_address: dict[str, int] = {}
        self._logged: dict[str, float] = {}

    def admit(self, address: str) -> Refusal | None:
        """Count a new connection from ``address`` (an ``address_key``), or say why not."""
        if self.count >= self.max_connections:
            return ("server-full", f"{self.count} connections open, the most allowed")
        held = self._by_address.get(address, 0)
        if held >= self.settings.max_connections_per_address:
            return ("address-full", f"{held} connections from this address, the most allowed")
        self._by_address[address] = held + 1
        self.count += 1
        return None

    def release(self, address: str) -> None:
        """A connection ``admit`` counted is gone."""
        held = self._by_address.get(address, 0)
        if held <= 1:
            self._by_address.pop(address, None)
        else:
            self._by_address[address] = held - 1
        self.count = max(0, self.count - 1)

    def held(self, address: str) -> int:
        """Connections open from ``address`` (for tests and metrics)."""
        return self._by_address.get(address, 0)

    def should_log(self, address: str, now: float) -> bool:
        """Whether a refusal of ``address`` at ``now`` gets a log line (once per interval)."""
        last = self._logged.get(address)
        if last is not None and now - last < self.settings.refusal_log_interval:
            return False
        if len(self._logged) >= self._MAX_LOGGED:
            horizon = now - self.settings.refusal_log_interval
            self._logged = {a: t for a, t in self._logged.items() if t > horizon}
            if len(self._logged) >= self._MAX_LOGGED:
                return False  # a flood from many addresses: its first lines said enough
        self._logged[address] = now
        return True
