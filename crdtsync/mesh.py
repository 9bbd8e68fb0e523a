"""The mesh manager: one link per remote peer, a sync session on each, relays where needed.

It reacts to the room (members come and go) and to links (opened, data, lost), dials whom
its dial policy says (``protocol/dialing.py``: everyone when the room fits in
``max_conns``, else the ring successor plus a seeded random subset, with backoff), resolves
glare, and moves updates between the replica and the link cores. Transport-agnostic: it
sees only ``Connector`` and ``Link``. All protocol rules live in the cores; this is their
adapter to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pycrdt

from crdtsync.errors import ProtocolError, SyncTimeoutError, TransportError
from crdtsync.mesh_link import MeshLink
from crdtsync.mesh_settings import (
    DEFAULT_MAX_CONNS,
    DEFAULT_PRESENCE_TIMEOUT,
    LinkCoreFactory,
    MeshSettings,
    native_link_core,
)
from crdtsync.protocol.awareness import Presence
from crdtsync.protocol.batching import BatchWindow
from crdtsync.protocol.dialing import DialPolicy
from crdtsync.protocol.events import (
    AwarenessQueried,
    AwarenessReceived,
    Event,
    HelloReceived,
    LinkClosed,
    LinksReceived,
    SyncCompleted,
)
from crdtsync.protocol.frames import CloseCode
from crdtsync.protocol.link import Arrival, LinkCore, LinkState
from crdtsync.protocol.relay import (
    NO_SOURCES,
    Sources,
    flood_targets,
    merge_sources,
    update_targets,
)
from crdtsync.replica import MERGE_GROUP, Replica, merge_many
from crdtsync.transport.base import Connector, Link
from crdtsync.transport.stats import LinkStats

__all__ = [
    "DEFAULT_MAX_CONNS",
    "DEFAULT_PRESENCE_TIMEOUT",
    "LinkCoreFactory",
    "Mesh",
    "MeshSettings",
    "native_link_core",
]

# Closes that mean the remote peer broke the protocol or a limit.
VIOLATIONS = frozenset(
    {CloseCode.PROTOCOL_ERROR, CloseCode.UNSUPPORTED_VERSION, CloseCode.TOO_BIG, CloseCode.POLICY}
)

logger = logging.getLogger(__name__)

ANNOUNCE_DELAY = 0.010  # seconds new links wait to be announced (see _announce_links_soon)
# Links held back while another link's first sync is in flight sync anyway after this long,
# so a slow or silent peer delays them at most that much.
FIRST_SYNC_GRACE = 2.0


class Mesh:
    """Keeps one replica in sync with every peer of one room, over one connector."""

    def __init__(
        self,
        replica: Replica,
        awareness: pycrdt.Awareness,
        connector: Connector,
        *,
        settings: MeshSettings | None = None,
        rng: random.Random | None = None,
        link_core: LinkCoreFactory = native_link_core,
    ) -> None:
        self.replica = replica
        self._link_core = link_core
        self.awareness = awareness
        self.connector = connector
        self.settings = settings or MeshSettings()
        self._rng = rng or random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._presence: Presence | None = None
        self._conns: dict[str, MeshLink] = {}
        self._members: frozenset[str] = frozenset()
        self._dialing: set[str] = set()
        self._policy = DialPolicy(
            connector.local_id,
            max_conns=self.settings.max_conns,
            reconnect_base=self.settings.reconnect_base,
            reconnect_cap=self.settings.reconnect_cap,
            rng=self._rng,
        )
        self._announced: frozenset[str] = frozenset()
        self._maintain_timer: asyncio.TimerHandle | None = None
        self._presence_timer: asyncio.TimerHandle | None = None
        self._announce_timer: asyncio.TimerHandle | None = None
        self._first_sync: str | None = None  # the link whose first sync is in flight
        self._held_syncs: set[str] = set()  # links that wait for it before they sync
        self._release_timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self._batch = BatchWindow(self.settings.batch_window)
        self._background: set[asyncio.Task[None]] = set()
        self._waiters: list[asyncio.Future[None]] = []
        # Told after links, sync or congestion may have changed (Peer's host events).
        self.on_change: Callable[[], None] | None = None
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        # Transport messages' bytes, every link counted, for progress displays and benchmarks.
        self.bytes_sent = 0
        self.bytes_received = 0

    # -- public state ---------------------------------------------------------------------------

    @property
    def local_id(self) -> str:
        return self.connector.local_id

    @property
    def peers(self) -> frozenset[str]:
        """Remote peers whose link is open (they said HELLO)."""
        return frozenset(
            remote for remote, conn in self._conns.items() if conn.protocol.state is LinkState.OPEN
        )

    @property
    def congested(self) -> frozenset[str]:
        """Remote peers whose link holds updates back until its send buffer drains."""
        return frozenset(remote for remote, conn in self._conns.items() if conn.held)

    @property
    def synced(self) -> bool:
        """Whether step 2 arrived on every open link."""
        return all(
            conn.protocol.synced
            for conn in self._conns.values()
            if conn.protocol.state is LinkState.OPEN
        )

    @property
    def members(self) -> frozenset[str]:
        """The other peers in the room, as the connector last said."""
        return self._members

    def link_stats(self) -> dict[str, LinkStats]:
        """Each open link's path, round-trip time and traffic, by remote peer id."""
        now = self._now() if self._loop is not None else 0.0
        return {
            remote: conn.stats(now)
            for remote, conn in self._conns.items()
            if conn.protocol.state is LinkState.OPEN
        }

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the room and start linking."""
        self._loop = asyncio.get_running_loop()
        self._presence = Presence(
            self.awareness,
            now=self._now(),
            outdated_timeout=self.settings.presence_timeout,
            on_outgoing=self._schedule_flush,
        )
        self.replica.on_outgoing = self._schedule_flush
        await self.connector.start(self)
        self._arm_presence()
        logger.info("= %s joined its room", self.local_id)

    def flush(self) -> None:
        """Hand the replica's pending updates over now rather than at the end of this tick."""
        if self._loop is not None and not self._closed:
            self._flush()
        else:
            self.replica.take_outgoing()  # not started, or closed: nothing to send, but stored

    async def aclose(self) -> None:
        """Send what is pending, say BYE on every link, leave the room; idempotent."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        if self._loop is not None and not self._closed:
            self._flush()
        self._closed = True
        for conn in list(self._conns.values()):
            self._release_held(conn)
            conn.protocol.close(CloseCode.GOING_AWAY, "peer is leaving")
            self._pump(conn)
        for handle in (
            self._maintain_timer,
            self._presence_timer,
            self._announce_timer,
            self._release_timer,
        ):
            if handle is not None:
                handle.cancel()
        self.replica.on_outgoing = None
        if self._presence is not None:
            self._presence.close()
        await self.connector.aclose()
        while self._background:
            for result in await asyncio.gather(*list(self._background), return_exceptions=True):
                if isinstance(result, Exception):
                    logger.warning("! %s: closing a link failed: %r", self.local_id, result)
        self._notify()
        logger.info("= %s left its room", self.local_id)

    async def wait_until(self, predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Wait until ``predicate()`` holds; SyncTimeoutError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    if self._closed:
                        raise TransportError(f"{self.local_id} is closed while waiting for {what}")
                    waiter = loop.create_future()
                    self._waiters.append(waiter)
                    await waiter
        except TimeoutError as exc:
            raise SyncTimeoutError(
                f"{self.local_id}: {what} not reached within {timeout} s "
                f"(members {sorted(self._members)}, linked {sorted(self.peers)}, "
                f"synced {self.synced})"
            ) from exc

    # -- LinkListener ---------------------------------------------------------------------------

    def members_changed(self, members: frozenset[str]) -> None:
        if self._closed:
            return
        logger.debug("= %s sees members %s", self.local_id, sorted(members))
        self._members = members
        self._policy.members_changed(members)
        self._maintain()
        self._notify()

    def link_opened(self, link: Link) -> None:
        if self._closed:
            self._spawn(link.aclose())
            return
        remote = link.remote_id
        self._dialing.discard(remote)
        existing = self._conns.get(remote)
        # Glare: both sides keep the link dialed by the smaller id (the newer one if the same
        # side dialed twice: it gave the old one up), so both make the same choice.
        if existing is not None and self._dialer(existing.link) < self._dialer(link):
            logger.debug("= %s keeps its older link to %s", self.local_id, remote)
            self._spawn(link.aclose())
            return
        protocol = self._link_core(
            self.local_id, {self.replica.doc_id: self.replica}, remote, self.settings.link
        )
        conn = MeshLink(link, protocol, self._now())
        link.set_low_water(self.settings.link.send_buffer_low)
        self._conns[remote] = conn  # before the old one closes, so nobody redials meanwhile
        if existing is not None:
            existing.protocol.close(CloseCode.DUPLICATE, "replaced by a newer link")
            self._pump(existing)
        self._start(conn)
        protocol.send_awareness(self.replica.doc_id, self._presence_core().full_state())
        if self.peers:  # the remote takes us for linked with nobody until told otherwise
            protocol.send_links(self.peers)
        logger.debug(
            "> %s opened a link to %s (initiator=%s)", self.local_id, remote, link.initiator
        )
        self._pump(conn)

    def _start(self, conn: MeshLink) -> None:
        """Start a new link's core, holding back its step 1 while another link's first sync
        is in flight: a newcomer then gets the document once, not once per peer, and later
        links send only what that first sync did not bring."""
        remote = conn.link.remote_id
        hold = self._first_sync is not None and self._first_sync != remote
        conn.protocol.start(self._now(), sync=not hold)
        if not hold:
            self._first_sync = remote
            return
        logger.debug(
            "= %s holds its sync with %s until the one with %s is done",
            self.local_id,
            remote,
            self._first_sync,
        )
        self._held_syncs.add(remote)
        if self._release_timer is None:
            self._release_timer = self._loop_call_at(
                self._now() + FIRST_SYNC_GRACE, self._release_syncs
            )

    def _release_syncs(self) -> None:
        """Let the held-back links sync now (the first sync is done, gone or too slow)."""
        self._first_sync = None
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        held, self._held_syncs = self._held_syncs, set()
        for remote in held:
            conn = self._conns.get(remote)
            if conn is not None:
                conn.protocol.start_sync(self.replica.doc_id)
                self._pump(conn)

    def link_failed(self, remote_id: str, reason: str) -> None:
        if self._closed:
            return
        logger.info("! %s could not link to %s: %s", self.local_id, remote_id, reason)
        self._dialing.discard(remote_id)
        self._policy.failed(remote_id, self._now())
        self._maintain()

    def data_received(self, link: Link, data: bytes) -> None:
        conn = self._conns.get(link.remote_id)
        if conn is None or conn.link is not link:
            return
        self.bytes_received += len(data)
        conn.messages_received += 1
        conn.bytes_received += len(data)
        conn.protocol.receive_data(data, self._now())
        self._pump(conn)
        if self._waiters:  # what arrived may be what someone waits for (remote edits)
            self._notify()

    def link_drained(self, link: Link) -> None:
        conn = self._conns.get(link.remote_id)
        if conn is not None and conn.link is link and conn.held:
            self._release_held(conn)
            self._pump(conn)
            self._notify()

    def link_lost(self, link: Link, reason: str) -> None:
        conn = self._conns.get(link.remote_id)
        if conn is None or conn.link is not link:
            return
        conn.lost = True
        conn.protocol.close(CloseCode.GOING_AWAY, f"link lost: {reason}")
        self._pump(conn)

    # -- moving bytes ---------------------------------------------------------------------------

    def _pump(self, conn: MeshLink) -> None:
        """Write what the core wants sent, act on its events, re-arm its timer."""
        while True:
            outgoing = conn.protocol.data_to_send()
            events = conn.protocol.events_received()
            if not outgoing and not events:
                break
            if not conn.lost:
                try:
                    for data in outgoing:
                        conn.link.send(data)
                        self.bytes_sent += len(data)
                        conn.messages_sent += 1
                        conn.bytes_sent += len(data)
                except TransportError as exc:
                    conn.lost = True
                    conn.protocol.close(CloseCode.GOING_AWAY, f"send failed: {exc}")
            for event in events:
                self._on_event(conn, event)
        self._arm(conn)

    def _on_event(self, conn: MeshLink, event: Event) -> None:
        remote = conn.link.remote_id
        if isinstance(event, HelloReceived):
            logger.info("= %s linked with %s", self.local_id, remote)
            self._policy.linked(remote)
            self._announce_links_soon()
        elif isinstance(event, SyncCompleted):
            logger.debug("= %s synced %s with %s", self.local_id, event.doc_id, remote)
            if remote == self._first_sync:
                self._release_syncs()
        elif isinstance(event, AwarenessReceived):
            try:
                self._presence_core().receive_update(event.update, conn.protocol, self._now())
            except ProtocolError as exc:
                conn.protocol.close(exc.close_code, str(exc))
        elif isinstance(event, AwarenessQueried):
            conn.protocol.send_awareness(event.doc_id, self._presence_core().full_state())
        elif isinstance(event, LinksReceived):
            lost = conn.neighbors - event.peer_ids
            conn.neighbors = event.peer_ids
            if lost:
                self._request_resyncs(f"{remote} lost its link with {', '.join(sorted(lost))}")
        elif isinstance(event, LinkClosed):
            self._forget(conn, event)
        self._notify()

    def _forget(self, conn: MeshLink, event: LinkClosed) -> None:
        remote = conn.link.remote_id
        if self._conns.get(remote) is conn:
            del self._conns[remote]
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        self._spawn(conn.link.aclose())
        if self._closed:
            return
        self._held_syncs.discard(remote)
        if remote == self._first_sync and remote not in self._conns:
            self._release_syncs()
        side = "remote" if event.by_remote else "local"
        logger.info(
            "= %s unlinked from %s (%s, %d %s)",
            self.local_id,
            remote,
            side,
            event.code,
            event.reason,
        )
        self._presence_core().forget_origin(conn.protocol)
        if event.code == CloseCode.DUPLICATE:
            return  # the link that replaces it syncs in full
        if not event.by_remote and event.code in VIOLATIONS:
            self._policy.violated(remote)
        if conn.protocol.remote_id is not None:
            # Updates in flight on the lost link may be gone, and peers may have counted on
            # that link when they chose not to relay: ask everyone else for what we lack.
            for other in list(self._conns.values()):
                other.protocol.resync(self.replica.doc_id)
                self._pump(other)
            self._request_resyncs(f"the link with {remote} is lost")
            self._announce_links()
        self._policy.failed(remote, self._now())
        self._maintain()

    def _request_resyncs(self, why: str) -> None:
        """Ask the links we kept an update from to pull from us: we relayed on neighbour
        lists that named a link now lost, and their peer may have counted on it. A link
        asked since it last missed an update pulls after that update, so it is left out."""
        skipped = [conn for conn in self._conns.values() if conn.skipped]
        if skipped:
            logger.debug("> %s asks %d links to resync: %s", self.local_id, len(skipped), why)
        for conn in skipped:
            conn.skipped = False
            conn.protocol.request_resync(self.replica.doc_id)
            self._pump(conn)

    def _announce_links_soon(self) -> None:
        """Announce new links after ANNOUNCE_DELAY: a forming mesh opens links in a burst,
        and one LINKS per link for the whole burst beats one per opening (N*d**2 messages).
        Until then neighbours just relay a little more to us than they need to."""
        if self._announce_timer is None and not self._closed:
            self._announce_timer = self._loop_call_at(
                self._now() + ANNOUNCE_DELAY, self._announce_links
            )

    def _announce_links(self) -> None:
        """Tell every link which peers we link with now. A lost link is told at once: until
        then, neighbours would keep from relaying us updates from that peer."""
        if self._announce_timer is not None:
            self._announce_timer.cancel()
            self._announce_timer = None
        peers = self.peers
        if peers == self._announced:
            return
        self._announced = peers
        for conn in list(self._conns.values()):
            conn.protocol.send_links(peers)
            self._pump(conn)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and not self._closed and self._loop is not None:
            self._flush_scheduled = True
            now = self._now()
            due = self._batch.due(now)
            if due <= now:
                self._loop.call_soon(self._flush)  # quiet until now: no waiting
            else:
                self._loop.call_at(due, self._flush, True)

    def _flush(self, waited: bool = False) -> None:
        """Send everything the replica and presence produced since the last flush; ``waited``
        when it waited for the batching window to close."""
        self._flush_scheduled = False
        if self._closed:
            return
        touched: dict[str, MeshLink] = {}
        doc_id = self.replica.doc_id
        for outgoing in self.replica.take_outgoing():
            sources = self._sources(outgoing.origin)
            for remote, conn in self._targets(outgoing.origin, sources):
                self._send_update(conn, outgoing.update, sources)
                touched[remote] = conn
        for presence in self._presence_core().updates_to_send(self._now()):
            for remote, conn in self._presence_targets(presence.origin):
                conn.protocol.send_awareness(doc_id, presence.update)
                touched[remote] = conn
        if touched:
            self._batch.sent(self._now(), waited=waited)
        for conn in touched.values():
            self._pump(conn)

    def _send_update(self, conn: MeshLink, update: bytes, sources: Sources) -> None:
        """Send now, or hold while the link's send buffer is over the high-water mark."""
        if not conn.held and conn.link.buffered_amount <= self.settings.link.send_buffer_high:
            conn.protocol.send_update(self.replica.doc_id, update, sources)
            return
        if not conn.held:
            logger.debug("= %s holds updates for %s: link congested", self.local_id, conn.link)
            self._notify()
        conn.held.append(update)
        conn.held_sources = merge_sources(conn.held_sources, sources)
        if len(conn.held) >= MERGE_GROUP:  # keep what waits small: one merged update
            conn.held[:] = [merge_many(conn.held)]

    def _release_held(self, conn: MeshLink) -> None:
        """Send what a congested link held back, as one update."""
        if conn.held:
            update = merge_many(conn.held)
            conn.held.clear()
            sources, conn.held_sources = conn.held_sources, NO_SOURCES
            logger.debug("= %s releases %d held bytes to %s", self.local_id, len(update), conn.link)
            conn.protocol.send_update(self.replica.doc_id, update, sources)

    def _sources(self, origin: object | None) -> Sources:
        """Whose edits an outgoing update holds: ours, those its link said, or not known."""
        if origin is None:
            return frozenset({self.local_id})
        return origin.sources if isinstance(origin, Arrival) else None

    def _targets(self, origin: object | None, sources: Sources) -> Iterator[tuple[str, MeshLink]]:
        """The links an update with these ``sources`` goes to (``protocol/relay.py``)."""
        if isinstance(origin, Arrival):
            origin = origin.link
        arrival = origin.remote_id if isinstance(origin, LinkCore) else None
        conns = self._open_conns()
        lists = {remote: conn.neighbors for remote, conn in conns.items()}
        targets = update_targets(self.local_id, lists, sources=sources, arrival=arrival)
        for remote, conn in conns.items():
            if remote in targets:
                yield remote, conn
            elif remote != arrival:
                conn.skipped = True  # a peer may count on it: see _request_resyncs

    def _presence_targets(self, origin: object | None) -> Iterator[tuple[str, MeshLink]]:
        """The links a presence update goes to: not back where it came from, and not to peers
        that have a link of their own with its source (that peer sends it to them)."""
        arrival = origin.remote_id if isinstance(origin, LinkCore) else None
        conns = self._open_conns()
        for remote in flood_targets({r: c.neighbors for r, c in conns.items()}, arrival):
            yield remote, conns[remote]

    def _open_conns(self) -> dict[str, MeshLink]:
        return {
            remote: conn
            for remote, conn in self._conns.items()
            if conn.protocol.state is not LinkState.CLOSED
        }

    # -- choosing whom to dial ------------------------------------------------------------------

    def _dialer(self, link: Link) -> str:
        return self.local_id if link.initiator else link.remote_id

    def _maintain(self) -> None:
        """Dial whom the policy says; come back when a backoff ends."""
        if self._closed or self._loop is None:
            return
        if self._maintain_timer is not None:
            self._maintain_timer.cancel()
            self._maintain_timer = None
        dials, retry_at = self._policy.due(
            self._now(), self._members, self._conns.keys() | self._dialing
        )
        for remote in dials:
            logger.debug("> %s dials %s", self.local_id, remote)
            self._dialing.add(remote)
            self._policy.dialed(remote, self._now())
            self.connector.dial(remote)
        if retry_at is not None:
            self._maintain_timer = self._loop.call_at(retry_at, self._maintain)

    # -- timers and tasks -----------------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None, "mesh not started"
        return self._loop.time()

    def _presence_core(self) -> Presence:
        assert self._presence is not None, "mesh not started"
        return self._presence

    def _arm(self, conn: MeshLink) -> None:
        deadline = conn.protocol.get_timer()
        if deadline == conn.deadline or self._conns.get(conn.link.remote_id) is not conn:
            return
        if deadline is not None and conn.deadline is not None and conn.deadline < deadline:
            return  # it fires early, finds nothing due and re-arms: cheaper than per message
        if conn.timer is not None:
            conn.timer.cancel()
        conn.deadline = deadline
        conn.timer = (
            None if deadline is None else self._loop_call_at(deadline, self._on_timer, conn)
        )

    def _on_timer(self, conn: MeshLink) -> None:
        conn.timer = None
        conn.deadline = None
        if self._conns.get(conn.link.remote_id) is not conn:
            return
        conn.protocol.handle_timer(self._now())
        self._pump(conn)

    def _arm_presence(self) -> None:
        if self._closed:
            return
        self._presence_timer = self._loop_call_at(
            self._presence_core().get_timer(), self._on_presence_timer
        )

    def _on_presence_timer(self) -> None:
        self._presence_core().handle_timer(self._now())
        self._arm_presence()

    def _loop_call_at(
        self, when: float, callback: Callable[..., None], *args: Any
    ) -> asyncio.TimerHandle:
        assert self._loop is not None, "mesh not started"
        return self._loop.call_at(when, callback, *args)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
