"""The mesh manager: one link per remote peer, a sync session per (link, document), relays.

It reacts to the room (members come and go) and to links (opened, data, lost): it drives
each link's core (writes what it queued, acts on its events, re-arms its timer), announces
its links, and forgets lost ones; documents open, close and are served on a remote's request
over the links already up. Its parts: whom to dial (``mesh_dialing.py``), the documents
loaded here (``mesh_documents.py``), what to send and where (``mesh_outbox.py``), which
links sync a document at once (``mesh_first_sync.py``), presence on the loop
(``mesh_presence.py``), the state of one link (``mesh_link.py``).
Transport-agnostic: it sees only ``Connector`` and ``Link``. All protocol rules live in the
cores; this is their adapter to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from crdtsync.errors import SyncTimeoutError, TransportError
from crdtsync.mesh_dialing import MeshDialing
from crdtsync.mesh_documents import MeshDocuments
from crdtsync.mesh_link import MeshLink
from crdtsync.mesh_outbox import MeshOutbox
from crdtsync.mesh_settings import (
    DEFAULT_MAX_CONNS,
    DEFAULT_PRESENCE_TIMEOUT,
    LinkCoreFactory,
    MeshSettings,
    native_link_core,
)
from crdtsync.mesh_workspace import MeshWorkspace, ServeDocument
from crdtsync.protocol.events import Event, HelloReceived, LinkClosed, LinksReceived
from crdtsync.protocol.frames import CloseCode
from crdtsync.protocol.link import LinkState
from crdtsync.transport.base import Connector, Link
from crdtsync.transport.stats import LinkStats
from crdtsync.workspace import SharePolicy, share_everything

__all__ = [
    "DEFAULT_MAX_CONNS",
    "DEFAULT_PRESENCE_TIMEOUT",
    "LinkCoreFactory",
    "Mesh",
    "MeshSettings",
    "native_link_core",
]

logger = logging.getLogger(__name__)

ANNOUNCE_DELAY = 0.010  # seconds new links wait to be announced (see _announce_links_soon)


class Mesh:
    """Keeps the documents open here in sync with every peer of one room, over one connector."""

    def __init__(
        self,
        connector: Connector,
        *,
        settings: MeshSettings | None = None,
        rng: random.Random | None = None,
        link_core: LinkCoreFactory = native_link_core,
        share: SharePolicy = share_everything,
        serve: ServeDocument | None = None,
    ) -> None:
        self._link_core = link_core
        self.connector = connector
        self.settings = settings or MeshSettings()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: dict[str, MeshLink] = {}
        documents = MeshDocuments()
        self._dialing = MeshDialing(
            connector, self.settings, rng or random.Random(), self._conns.keys()
        )
        self._outbox = MeshOutbox(
            connector.local_id,
            documents,
            self._conns,
            self.settings,
            pump=self._pump,
            notify=self._notify,
        )
        # The documents and the links that carry each: open_document, close_document, pin,
        # awareness, settled, served, on_presence (what Peer asks of them).
        self.workspace = MeshWorkspace(
            connector.local_id,
            documents,
            self._conns,
            self.settings,
            share=share,
            serve=serve,
            pump=self._pump_soon,
            notify=self._notify,
            schedule=self._outbox.schedule,
            flush=self._outbox.flush,
        )
        self._announced: frozenset[str] = frozenset()
        self._announce_timer: asyncio.TimerHandle | None = None
        self._to_pump: dict[str, MeshLink] = {}  # links to pump at the end of this tick
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
        return frozenset(remote for remote, _ in self._open_links())

    @property
    def congested(self) -> frozenset[str]:
        """Remote peers whose link holds updates back until its send buffer drains."""
        return frozenset(remote for remote, conn in self._conns.items() if conn.held)

    @property
    def synced(self) -> bool:
        """Whether every document is settled on every open link (step 2 or ABSENT came)."""
        return all(conn.protocol.synced for _, conn in self._open_links())

    @property
    def members(self) -> frozenset[str]:
        """The other peers in the room, as the connector last said."""
        return self._dialing.members

    def link_stats(self) -> dict[str, LinkStats]:
        """Each open link's path, round-trip time and traffic, by remote peer id."""
        now = self._now() if self._loop is not None else 0.0
        return {remote: conn.stats(now) for remote, conn in self._open_links()}

    def _open_links(self) -> Iterator[tuple[str, MeshLink]]:
        """The links whose remote said HELLO, by remote peer id."""
        for remote, conn in self._conns.items():
            if conn.protocol.state is LinkState.OPEN:
                yield remote, conn

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the room and start linking."""
        self._loop = asyncio.get_running_loop()
        self._dialing.start(self._loop)
        self._outbox.start(self._loop)
        self.workspace.start(self._loop)
        await self.connector.start(self)
        logger.info("= %s joined its room", self.local_id)

    def flush(self) -> None:
        """Hand pending updates over now rather than at the end of this tick."""
        self._outbox.flush()

    async def aclose(self) -> None:
        """Send what is pending, say BYE on every link, leave the room; idempotent."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        self._outbox.close()
        self._closed = True
        for conn in list(self._conns.values()):
            self._outbox.release_held(conn)
            conn.protocol.close(CloseCode.GOING_AWAY, "peer is leaving")
            self._pump(conn)
        self._dialing.close()
        self.workspace.close()
        if self._announce_timer is not None:
            self._announce_timer.cancel()
        await self.connector.aclose()
        while self._background:
            for result in await asyncio.gather(*list(self._background), return_exceptions=True):
                if isinstance(result, Exception):
                    logger.warning("! %s: closing a link failed: %r", self.local_id, result)
        self.workspace.wake()
        self._notify()
        logger.info("= %s left its room", self.local_id)

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        *,
        timeout: float,
        what: str,
        doc_id: str | None = None,
    ) -> None:
        """Wait until ``predicate()`` holds; SyncTimeoutError after ``timeout`` seconds. With
        ``doc_id``, ``predicate`` is checked only when that document's sync moves (or a link
        goes): a thousand documents opening at once cost no more per message than one."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    if self._closed:
                        raise TransportError(f"{self.local_id} is closed while waiting for {what}")
                    waiter = loop.create_future()
                    if doc_id is None:
                        self._waiters.append(waiter)
                    else:
                        self.workspace.wait_on(doc_id, waiter)
                    await waiter
        except TimeoutError as exc:
            raise SyncTimeoutError(
                f"{self.local_id}: {what} not reached within {timeout} s "
                f"(members {sorted(self.members)}, linked {sorted(self.peers)}, "
                f"synced {self.synced})"
            ) from exc

    # -- LinkListener ---------------------------------------------------------------------------

    def members_changed(self, members: frozenset[str]) -> None:
        if self._closed:
            return
        self._dialing.members_changed(members)
        self._notify()

    def link_opened(self, link: Link) -> None:
        if self._closed:
            self._spawn(link.aclose())
            return
        remote = link.remote_id
        self._dialing.opened(remote)
        existing = self._conns.get(remote)
        if existing is not None and self._dialing.keeps_older(existing.link, link):
            logger.debug("= %s keeps its older link to %s", self.local_id, remote)
            self._spawn(link.aclose())
            return
        shared = self.workspace.shared_with(remote)
        protocol = self._link_core(
            self.local_id, {doc.doc_id: doc.replica for doc in shared}, remote, self.settings.link
        )
        conn = MeshLink(link, protocol, self._now())
        link.set_low_water(self.settings.link.send_buffer_low)
        self._conns[remote] = conn  # before the old one closes, so nobody redials meanwhile
        if existing is not None:
            existing.protocol.close(CloseCode.DUPLICATE, "replaced by a newer link")
            self._pump(existing)
        protocol.start(self._now(), sync=False)
        self.workspace.link_started(conn, shared)
        if self.peers:  # the remote takes us for linked with nobody until told otherwise
            protocol.send_links(self.peers)
        logger.debug(
            "> %s opened a link to %s (initiator=%s)", self.local_id, remote, link.initiator
        )
        self._pump(conn)

    def link_failed(self, remote_id: str, reason: str) -> None:
        if self._closed:
            return
        self._dialing.link_failed(remote_id, reason, self._now())

    def data_received(self, link: Link, data: bytes) -> None:
        conn = self._current(link)
        if conn is None:
            return
        self.bytes_received += len(data)
        conn.receive(data, self._now())
        self._pump(conn)
        if self._waiters:  # what arrived may be what someone waits for (remote edits)
            self._notify()

    def link_drained(self, link: Link) -> None:
        conn = self._current(link)
        if conn is not None and conn.held:
            self._outbox.release_held(conn)
            self._pump(conn)
            self._notify()

    def link_lost(self, link: Link, reason: str) -> None:
        conn = self._current(link)
        if conn is None:
            return
        conn.lost = True
        conn.protocol.close(CloseCode.GOING_AWAY, f"link lost: {reason}")
        self._pump(conn)

    # -- moving bytes ---------------------------------------------------------------------------

    def _current(self, link: Link) -> MeshLink | None:
        """The mesh's state for ``link``, unless it is not (or no longer) its link to that peer."""
        conn = self._conns.get(link.remote_id)
        return conn if conn is not None and conn.link is link else None

    def _pump(self, conn: MeshLink) -> None:
        """Write what the core wants sent, act on its events, re-arm its timer."""
        while True:
            outgoing = conn.protocol.data_to_send()
            events = conn.protocol.events_received()
            if not outgoing and not events:
                break
            self.bytes_sent += conn.send(outgoing)
            for event in events:
                self._on_event(conn, event)
        self._arm(conn)

    def _pump_soon(self, conn: MeshLink) -> None:
        """Pump at the end of this tick: a host that opens a thousand documents at once sends
        their step 1s in a few batches, not a message each."""
        if not self._to_pump and self._loop is not None:
            self._loop.call_soon(self._pump_pending)
        self._to_pump[conn.link.remote_id] = conn

    def _pump_pending(self) -> None:
        pending, self._to_pump = self._to_pump, {}
        for conn in pending.values():
            self._pump(conn)

    def _on_event(self, conn: MeshLink, event: Event) -> None:
        remote = conn.link.remote_id
        if isinstance(event, HelloReceived):
            logger.info("= %s linked with %s", self.local_id, remote)
            self._dialing.linked(remote)
            self._announce_links_soon()
        elif isinstance(event, LinksReceived):
            lost = conn.neighbors - event.peer_ids
            conn.neighbors = event.peer_ids
            if lost:
                self._outbox.request_resyncs(
                    f"{remote} lost its link with {', '.join(sorted(lost))}"
                )
        elif isinstance(event, LinkClosed):
            self._forget(conn, event)
        else:
            self.workspace.on_event(conn, event, self._now())
        self._notify()

    def _forget(self, conn: MeshLink, event: LinkClosed) -> None:
        remote = conn.link.remote_id
        if self._conns.get(remote) is conn:
            del self._conns[remote]
        conn.disarm()
        self._spawn(conn.link.aclose())
        if self._closed:
            return
        self.workspace.link_gone(conn, replaced=remote in self._conns)
        self.workspace.wake()  # a document may be settled now on every link left
        side = "remote" if event.by_remote else "local"
        logger.info(
            "= %s unlinked from %s (%s, %d %s)",
            self.local_id,
            remote,
            side,
            event.code,
            event.reason,
        )
        if event.code == CloseCode.DUPLICATE:
            return  # the link that replaces it syncs in full
        if conn.protocol.remote_id is not None:
            self.workspace.resync_lost(conn)
            self._outbox.request_resyncs(f"the link with {remote} is lost")
            self._announce_links()
        self._dialing.lost(remote, event, self._now())

    def _announce_links_soon(self) -> None:
        """Announce new links after ANNOUNCE_DELAY: a forming mesh opens links in a burst,
        and one LINKS per link for the whole burst beats one per opening (N*d**2 messages).
        Until then neighbours just relay a little more to us than they need to."""
        if self._announce_timer is None and not self._closed:
            self._announce_timer = self._started_loop().call_at(
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

    # -- timers and tasks -----------------------------------------------------------------------

    def _started_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "mesh not started"
        return self._loop

    def _now(self) -> float:
        return self._started_loop().time()

    def _arm(self, conn: MeshLink) -> None:
        if self._conns.get(conn.link.remote_id) is conn:
            conn.arm(self._started_loop(), self._on_timer)

    def _on_timer(self, conn: MeshLink) -> None:
        conn.timer = conn.deadline = None
        if self._conns.get(conn.link.remote_id) is not conn:
            return
        conn.protocol.handle_timer(self._now())
        self._pump(conn)

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
