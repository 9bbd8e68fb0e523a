"""A simulated network: reliable ordered links in memory, with seeded delays and faults.

Every delay comes from one seeded ``random.Random`` and every delivery is a timer on the
event loop, so on a virtual-clock loop (``crdtsync.testing.virtual_clock``) one seed replays
a whole run exactly. Faults: partitions between groups of peers (messages are held, as SCTP
would retransmit them, and flow again on heal unless a side gave up on the link), link drops,
silent peer crashes, and slow peers.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable

from crdtsync.errors import ConfigError, TransportError
from crdtsync.transport.base import Connector, Link, LinkListener

__all__ = ["SimConnector", "SimLink", "SimNetwork"]

logger = logging.getLogger(__name__)

_CLOSE = None  # the marker a closing end sends down its pipe


class SimNetwork:
    """An in-memory network shared by simulated peers; ``seed`` fixes every random choice."""

    def __init__(
        self,
        seed: int = 0,
        *,
        latency: float = 0.005,
        jitter: float = 0.0,
        dial_timeout: float = 2.0,
    ) -> None:
        if latency < 0 or jitter < 0 or dial_timeout <= 0:
            raise ConfigError(
                f"SimNetwork needs latency >= 0, jitter >= 0 and dial_timeout > 0 "
                f"(got {latency}, {jitter}, {dial_timeout})"
            )
        self.seed = seed
        self.latency = latency
        self.jitter = jitter
        self.dial_timeout = dial_timeout
        self._rng = random.Random(seed)
        self._rooms: dict[str, dict[str, SimConnector]] = {}
        self._next_peer = 0
        self._groups: list[frozenset[str]] = []
        self._crashed: set[str] = set()
        self._extra_latency: dict[str, float] = {}
        self._pipes: set[_Pipe] = set()
        # What crossed the network, for tests and benchmarks (messages per edit, bytes).
        self.messages_delivered = 0
        self.bytes_delivered = 0
        # Called with (sender id, receiver id, message) for every message delivered: a test
        # can check what a peer told whom.
        self.tap: Callable[[str, str, bytes], None] | None = None

    def __repr__(self) -> str:
        return f"SimNetwork(seed={self.seed}, latency={self.latency}, jitter={self.jitter})"

    # -- for peers --------------------------------------------------------------------------

    def connector(self, room: str) -> SimConnector:
        """A connector for one new peer in ``room``; the network gives it its id."""
        self._next_peer += 1
        return SimConnector(self, room, f"sim-{self._next_peer:03d}")

    def derive_rng(self) -> random.Random:
        """A random source for one peer's own choices, derived from the network's seed."""
        return random.Random(self._rng.getrandbits(64))

    # -- faults ---------------------------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut the network between groups of peer ids; peers named in no group form one more."""
        sets = [frozenset(group) for group in groups]
        named = [peer for group in sets for peer in group]
        if len(named) != len(set(named)):
            raise ConfigError("a peer id appears in two partition groups")
        self._groups = sets
        logger.info("= partition %s", [sorted(group) for group in sets])

    def heal(self) -> None:
        """End every partition; held messages flow again."""
        self._groups = []
        logger.info("= partition healed")
        for pipe in list(self._pipes):
            pipe.arm()

    def crash(self, peer_id: str) -> None:
        """Kill a peer silently: nothing it sends arrives, others notice only by silence."""
        self._crashed.add(peer_id)
        for members in self._rooms.values():
            if members.pop(peer_id, None) is not None:
                self._announce_members(members)
        logger.info("= %s crashed", peer_id)

    def drop_link(self, a: str, b: str) -> None:
        """Break the link between two peers abruptly; both ends hear ``link_lost``."""
        for pipe in list(self._pipes):
            if {pipe.sender.owner.local_id, pipe.receiver.owner.local_id} == {a, b}:
                pipe.receiver.lose("link dropped by the network")

    def slow(self, peer_id: str, extra_latency: float) -> None:
        """Add ``extra_latency`` seconds to every message to or from ``peer_id`` (0 restores)."""
        if extra_latency < 0:
            raise ConfigError(f"extra_latency must be >= 0 (got {extra_latency})")
        self._extra_latency[peer_id] = extra_latency

    def reachable(self, a: str, b: str) -> bool:
        """Whether messages between ``a`` and ``b`` flow now."""
        if a in self._crashed or b in self._crashed:
            return False
        if not self._groups:
            return True
        return self._group_of(a) == self._group_of(b)

    def open_links(self, peer_id: str) -> Counter[str]:
        """How many links ``peer_id`` holds open now to each remote peer (in any room)."""
        return Counter(
            link.remote_id
            for room in self._rooms.values()
            if peer_id in room
            for link in room[peer_id]._links
        )

    def crashed(self, peer_id: str) -> bool:
        return peer_id in self._crashed

    def queued_bytes(self, sender: str, receiver: str) -> int:
        """Bytes sent from ``sender`` to ``receiver`` and not yet delivered."""
        return sum(
            pipe.queued_bytes
            for pipe in self._pipes
            if (pipe.sender.owner.local_id, pipe.receiver.owner.local_id) == (sender, receiver)
        )

    # -- internals ------------------------------------------------------------------------------

    def _group_of(self, peer_id: str) -> int:
        for index, group in enumerate(self._groups):
            if peer_id in group:
                return index
        return -1

    def _delay(self, a: str, b: str) -> float:
        extra = self._extra_latency.get(a, 0.0) + self._extra_latency.get(b, 0.0)
        return self.latency + self.jitter * self._rng.random() + extra

    def _join(self, connector: SimConnector) -> None:
        members = self._rooms.setdefault(connector.room, {})
        members[connector.local_id] = connector
        self._announce_members(members)

    def _leave(self, connector: SimConnector) -> None:
        members = self._rooms.get(connector.room, {})
        if members.pop(connector.local_id, None) is not None:
            self._announce_members(members)

    def _announce_members(self, members: dict[str, SimConnector]) -> None:
        loop = asyncio.get_running_loop()
        for connector in list(members.values()):
            # Told after a network delay, as a signaling server would; what is told is the
            # room at that moment, so late notices never carry stale lists.
            loop.call_later(self.latency, connector.announce_members)

    def _members_for(self, connector: SimConnector) -> frozenset[str]:
        members = self._rooms.get(connector.room, {})
        return frozenset(members) - {connector.local_id}

    def _connect(self, dialer: SimConnector, remote_id: str) -> None:
        remote = self._rooms.get(dialer.room, {}).get(remote_id)
        loop = asyncio.get_running_loop()
        if remote is None or remote.closed:
            # Never call back from inside dial(): the caller may be iterating its own state.
            loop.call_soon(
                dialer.dial_failed, remote_id, f"{remote_id} is not in room {dialer.room!r}"
            )
            return
        if not self.reachable(dialer.local_id, remote_id):
            loop.call_later(
                self.dial_timeout,
                dialer.dial_failed,
                remote_id,
                f"no route to {remote_id} within {self.dial_timeout} s",
            )
            return
        local_end = SimLink(dialer, remote_id, initiator=True)
        remote_end = SimLink(remote, dialer.local_id, initiator=False)
        local_end.pipe = _Pipe(self, local_end, remote_end)
        remote_end.pipe = _Pipe(self, remote_end, local_end)
        local_end.remote_end, remote_end.remote_end = remote_end, local_end
        self._pipes.update((local_end.pipe, remote_end.pipe))
        # Both ends open together, as a data channel's do, after one round trip.
        loop.call_later(
            2 * self._delay(dialer.local_id, remote_id), self._open, local_end, remote_end
        )

    def _open(self, local_end: SimLink, remote_end: SimLink) -> None:
        dialer, remote = local_end.owner, remote_end.owner
        if dialer.closed or self.crashed(dialer.local_id):
            self._forget(local_end)
            return
        if remote.closed or not self.reachable(dialer.local_id, remote.local_id):
            self._forget(local_end)
            dialer.dial_failed(remote.local_id, "the remote went away while connecting")
            return
        remote_end.owner.opened(remote_end)
        local_end.owner.opened(local_end)

    def _forget(self, end: SimLink) -> None:
        for pipe in (end.pipe, end.remote_end.pipe if end.remote_end else None):
            if pipe is not None:
                pipe.discard()


class _Pipe:
    """One direction of a link: a FIFO of messages, each due after a network delay."""

    def __init__(self, network: SimNetwork, sender: SimLink, receiver: SimLink) -> None:
        self.network = network
        self.sender = sender
        self.receiver = receiver
        self._queue: deque[tuple[float, bytes | None]] = deque()
        self._handle: asyncio.TimerHandle | None = None
        self._last_due = 0.0
        self.queued_bytes = 0  # what the sender sees as its link's buffered amount

    def push(self, item: bytes | None) -> None:
        loop = asyncio.get_running_loop()
        delay = self.network._delay(self.sender.owner.local_id, self.receiver.owner.local_id)
        due = max(loop.time() + delay, self._last_due)  # a link never reorders
        self._last_due = due
        self._queue.append((due, item))
        self.queued_bytes += 0 if item is None else len(item)
        self.arm()

    def arm(self) -> None:
        if self._handle is None and self._queue:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_at(self._queue[0][0], self._deliver)

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._queue.clear()
        self.queued_bytes = 0
        self.network._pipes.discard(self)

    def _deliver(self) -> None:
        self._handle = None
        sender, receiver = self.sender.owner.local_id, self.receiver.owner.local_id
        if self.network.crashed(sender) or self.network.crashed(receiver):
            self.discard()
            return
        if not self.network.reachable(sender, receiver):
            return  # held until heal() arms the pipe again
        now = asyncio.get_running_loop().time()
        buffered = self.queued_bytes
        while self._queue and self._queue[0][0] <= now:
            _, item = self._queue.popleft()
            if item is _CLOSE:
                self.discard()
                self.receiver.lose("closed by the remote peer")
                return
            self.queued_bytes -= len(item)
            self.network.messages_delivered += 1
            self.network.bytes_delivered += len(item)
            if self.network.tap is not None:
                self.network.tap(sender, receiver, item)
            self.receiver.deliver(item)
        low_water = self.sender.low_water
        if buffered > low_water >= self.queued_bytes:
            self.sender.drained()
        self.arm()


class SimLink(Link):
    """One end of a simulated link."""

    def __init__(self, owner: SimConnector, remote_id: str, *, initiator: bool) -> None:
        super().__init__(remote_id, initiator=initiator)
        self.owner = owner
        self.pipe: _Pipe | None = None  # toward the remote end
        self.open = False
        self.closed = False
        self.remote_end: SimLink | None = None

    def __repr__(self) -> str:
        return f"<SimLink {self.owner.local_id}->{self.remote_id}>"

    def send(self, data: bytes) -> None:
        if self.closed or self.pipe is None:
            raise TransportError(f"send on closed link {self.owner.local_id}->{self.remote_id}")
        if self.owner.network.crashed(self.owner.local_id):
            return
        self.pipe.push(bytes(data))

    @property
    def buffered_amount(self) -> int:
        return 0 if self.pipe is None else self.pipe.queued_bytes

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.owner.forget(self)
        if self.pipe is not None and not self.owner.network.crashed(self.owner.local_id):
            self.pipe.push(_CLOSE)

    def deliver(self, data: bytes) -> None:
        if not self.closed and self.open:
            self.owner.received(self, data)

    def drained(self) -> None:
        if not self.closed and self.open:
            self.owner.drained(self)

    def lose(self, reason: str) -> None:
        """The link broke under this end: tell its owner, once."""
        if self.closed:
            return
        self.closed = True
        was_open = self.open
        self.owner.forget(self)
        if self.pipe is not None:
            self.pipe.discard()
        if was_open:
            self.owner.lost(self, reason)


class SimConnector(Connector):
    """A peer's way into a ``SimNetwork`` room."""

    def __init__(self, network: SimNetwork, room: str, local_id: str) -> None:
        self.network = network
        self.room = room
        self._local_id = local_id
        self._listener: LinkListener | None = None
        self._links: set[SimLink] = set()
        self.closed = False

    @property
    def local_id(self) -> str:
        return self._local_id

    async def start(self, listener: LinkListener) -> None:
        if self._listener is not None:
            raise TransportError("connector already started")
        self._listener = listener
        self.network._join(self)

    def dial(self, remote_id: str) -> None:
        if self.closed or self.network.crashed(self.local_id):
            return
        self.network._connect(self, remote_id)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        for link in list(self._links):
            await link.aclose()
        if not self.network.crashed(self.local_id):
            self.network._leave(self)

    # -- called by the network ------------------------------------------------------------------

    def _alive(self) -> bool:
        return not self.closed and not self.network.crashed(self.local_id)

    def announce_members(self) -> None:
        if self._listener is not None and self._alive():
            self._listener.members_changed(self.network._members_for(self))

    def dial_failed(self, remote_id: str, reason: str) -> None:
        if self._listener is not None and self._alive():
            self._listener.link_failed(remote_id, reason)

    def opened(self, link: SimLink) -> None:
        if self._listener is None or not self._alive():
            return
        link.open = True
        self._links.add(link)
        self._listener.link_opened(link)

    def received(self, link: SimLink, data: bytes) -> None:
        if self._listener is not None and self._alive():
            self._listener.data_received(link, data)

    def drained(self, link: SimLink) -> None:
        if self._listener is not None and self._alive():
            self._listener.link_drained(link)

    def lost(self, link: SimLink, reason: str) -> None:
        if self._listener is not None and self._alive():
            self._listener.link_lost(link, reason)

    def forget(self, link: SimLink) -> None:
        self._links.discard(link)
