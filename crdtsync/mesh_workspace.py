"""The mesh's documents over its links: opening, closing and serving them on the links up.

A document opened here goes onto every link whose remote the share policy allows; one a
remote asks for is carried if we have it, or loaded from the store (``serve``), else refused
as one we lack. Each (link, document) syncs once its first sync is admitted
(``mesh_first_sync.py``); presence is per document, made on first use; documents loaded for
remotes are unloaded again once idle. The mesh (``mesh.py``) hands it the events that
concern documents and tells it about links opening and going.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import pycrdt

from crdtsync.errors import ProtocolError
from crdtsync.mesh_documents import MeshDocument, MeshDocuments
from crdtsync.mesh_first_sync import FirstSyncGate
from crdtsync.mesh_link import MeshLink
from crdtsync.mesh_presence import MeshPresence
from crdtsync.mesh_settings import MeshSettings
from crdtsync.protocol.events import (
    AwarenessQueried,
    AwarenessReceived,
    DocumentAbsent,
    DocumentRequested,
    Event,
    SyncCompleted,
)
from crdtsync.protocol.link import LinkState
from crdtsync.replica import Replica
from crdtsync.workspace import SharePolicy

__all__ = ["MeshWorkspace", "ServeDocument"]

logger = logging.getLogger("crdtsync.mesh")  # the mesh's parts log as the mesh

ServeDocument = Callable[[str], Replica | None]
"""``serve(doc_id)``: a replica of a document that is not open, loaded for a remote that
asks for it (from the store), or None when it is not kept here."""


class MeshWorkspace:
    """One mesh's documents and the links that carry each of them."""

    def __init__(
        self,
        local_id: str,
        documents: MeshDocuments,
        conns: Mapping[str, MeshLink],
        settings: MeshSettings,
        *,
        share: SharePolicy,
        serve: ServeDocument | None,
        pump: Callable[[MeshLink], None],
        notify: Callable[[], None],
        schedule: Callable[[MeshDocument], None],
        flush: Callable[[], None],
    ) -> None:
        """``conns``: the mesh's links by remote id (live); ``pump(conn)`` writes what a
        link's core queued; ``schedule(document)`` and ``flush()`` are the outbox's."""
        self._local_id = local_id
        self.documents = documents
        self._conns = conns
        self._settings = settings
        self._share = share
        self._serve = serve
        self._pump = pump
        self._notify = notify
        self._schedule = schedule
        self._flush = flush
        self._first_sync = FirstSyncGate(local_id, self._sync_held)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unload_timer: asyncio.TimerHandle | None = None
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}  # by doc id
        # Told when an open document gets its presence (Peer's host events watch it).
        self.on_presence: Callable[[str, pycrdt.Awareness], None] | None = None

    # -- state ----------------------------------------------------------------------------------

    @property
    def served(self) -> frozenset[str]:
        """The ids of documents loaded for remote peers, not open here."""
        return frozenset(doc.doc_id for doc in self.documents if not doc.pinned)

    def replica(self, doc_id: str) -> Replica | None:
        """The replica of a loaded document (open or served)."""
        document = self.documents.get(doc_id)
        return None if document is None else document.replica

    def settled(self, doc_id: str) -> bool:
        """Whether every open link that carries ``doc_id`` has settled it."""
        return all(
            conn.protocol.settled(doc_id)
            for conn in self._conns.values()
            if conn.protocol.state is LinkState.OPEN and conn.protocol.carries(doc_id)
        )

    def awareness(self, doc_id: str) -> pycrdt.Awareness:
        """The awareness of a loaded document, its presence made now if it had none."""
        document = self.documents.get(doc_id)
        assert document is not None, f"document {doc_id!r} not loaded"
        return self._presence(document).awareness

    def wait_on(self, doc_id: str, waiter: asyncio.Future[None]) -> None:
        """Resolve ``waiter`` when the sync of ``doc_id`` moves (see :meth:`wake`)."""
        self._waiters.setdefault(doc_id, []).append(waiter)

    def wake(self, doc_id: str | None = None) -> None:
        """Resolve the waiters of ``doc_id`` (of every document if None: a link went)."""
        if doc_id is None:
            waiting = [waiter for waiters in self._waiters.values() for waiter in waiters]
            self._waiters.clear()
        else:
            waiting = self._waiters.pop(doc_id, [])
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on ``loop`` from now on (the mesh has started)."""
        self._loop = loop
        self._first_sync.start(loop)
        for document in self.documents:
            if document.presence is not None:
                document.presence.start(loop)
                document.presence.arm()

    def close(self) -> None:
        """Stop every timer; replicas and presences stop observing their documents."""
        self._first_sync.close()
        if self._unload_timer is not None:
            self._unload_timer.cancel()
        for document in self.documents:
            document.replica.on_outgoing = None
            document.replica.close()
            if document.presence is not None:
                document.presence.close()

    # -- the host's verbs -----------------------------------------------------------------------

    def open_document(self, replica: Replica) -> None:
        """Sync ``replica``'s document from now on, on every link that may carry it."""
        self._load(replica, pinned=True)

    def pin(self, doc_id: str) -> Replica | None:
        """Keep a loaded document open for the host (one served so far stays loaded); its
        replica, or None if it is not loaded."""
        document = self.documents.get(doc_id)
        if document is None:
            return None
        if not document.pinned:
            self.documents.pin(document)
            if document.presence is not None and self.on_presence is not None:
                self.on_presence(doc_id, document.presence.awareness)
        return document.replica

    def close_document(self, doc_id: str, *, still_served: bool) -> None:
        """Stop syncing an open document after sending what is pending, our presence in it
        withdrawn. ``still_served``: remotes may still ask for it (from the store), so links
        are not told it is gone."""
        document = self.documents.get(doc_id)
        if document is None:
            return
        if document.presence is not None:
            document.presence.awareness.set_local_state(None)  # others drop our cursor
        self._flush()
        self._unload(document, tell=not still_served)

    # -- links ----------------------------------------------------------------------------------

    def shared_with(self, remote: str) -> list[MeshDocument]:
        """The loaded documents a new link to ``remote`` carries."""
        return [doc for doc in self.documents if self._share(remote, doc.doc_id)]

    def link_started(self, conn: MeshLink, shared: list[MeshDocument]) -> None:
        """A new link's core started without syncing: sync what is admitted, send presence."""
        for document in shared:
            if self._first_sync.admit(conn.link.remote_id, document.doc_id):
                conn.protocol.start_sync(document.doc_id)
            if document.presence is not None and document.presence.started:
                conn.protocol.send_awareness(document.doc_id, document.presence.core.full_state())

    def link_gone(self, conn: MeshLink, *, replaced: bool) -> None:
        """A link closed: its first syncs are let go, presence heard through it dropped."""
        self._first_sync.unlinked(conn.link.remote_id, replaced=replaced)
        for document in self.documents:
            if document.presence is not None and document.presence.started:
                document.presence.core.forget_origin(conn.protocol)

    def resync_lost(self, lost: MeshLink) -> None:
        """Ask every other link for what the documents of a lost link may lack: updates in
        flight on it may be gone, and peers may have counted on it when they chose not to
        relay."""
        carried = [doc.doc_id for doc in self.documents if lost.protocol.carries(doc.doc_id)]
        for conn in list(self._conns.values()):
            for doc_id in carried:
                if conn.protocol.carries(doc_id):
                    conn.protocol.resync(doc_id)
            self._pump(conn)

    def on_event(self, conn: MeshLink, event: Event, now: float) -> None:
        """Act on a link core's event about a document (others are ignored here)."""
        remote = conn.link.remote_id
        if isinstance(event, SyncCompleted | DocumentAbsent):
            settled = "synced" if isinstance(event, SyncCompleted) else "lacks"
            logger.debug("= %s: %s %s %s", self._local_id, remote, settled, event.doc_id)
            self._first_sync.completed(remote, event.doc_id)
            self.wake(event.doc_id)
        elif isinstance(event, DocumentRequested):
            self._requested(conn, event.doc_id)
        elif isinstance(event, AwarenessReceived | AwarenessQueried):
            document = self.documents.get(event.doc_id)
            if document is None:  # only carried documents reach here, and those are loaded
                return
            presence = self._presence(document)
            if isinstance(event, AwarenessQueried):
                conn.protocol.send_awareness(event.doc_id, presence.core.full_state())
                return
            try:
                presence.core.receive_update(event.update, conn.protocol, now)
            except ProtocolError as exc:
                conn.protocol.close(exc.close_code, str(exc))

    # -- internals ------------------------------------------------------------------------------

    def _load(self, replica: Replica, *, pinned: bool) -> MeshDocument:
        now = 0.0 if self._loop is None else self._loop.time()
        document = MeshDocument(replica, pinned=pinned, now=now)
        self.documents.add(document)
        replica.on_outgoing = lambda: self._schedule(document)
        for remote, conn in list(self._conns.items()):
            if conn.protocol.state is not LinkState.CLOSED and self._share(remote, replica.doc_id):
                self._add_to_link(conn, document)
        self._arm_unload()
        return document

    def _add_to_link(self, conn: MeshLink, document: MeshDocument) -> None:
        doc_id = document.doc_id
        sync = self._first_sync.admit(conn.link.remote_id, doc_id)
        conn.protocol.add_document(doc_id, document.replica, sync=sync)
        if document.presence is not None and document.presence.started:
            conn.protocol.send_awareness(doc_id, document.presence.core.full_state())
        self._pump(conn)

    def _unload(self, document: MeshDocument, *, tell: bool) -> None:
        doc_id = document.doc_id
        self.documents.remove(doc_id)
        self._first_sync.forget(doc_id)
        for conn in list(self._conns.values()):
            if conn.protocol.state is not LinkState.CLOSED and conn.protocol.carries(doc_id):
                conn.protocol.remove_document(doc_id, tell=tell)
                conn.held.pop(doc_id, None)
                self._pump(conn)
        if document.presence is not None:
            document.presence.close()
        document.replica.on_outgoing = None
        document.replica.close()
        logger.debug("= %s unloaded %s", self._local_id, doc_id)
        self._notify()

    def _presence(self, document: MeshDocument) -> MeshPresence:
        """The document's presence, made (and started, once the mesh is) on first use."""
        if document.presence is None:
            presence = MeshPresence(
                pycrdt.Awareness(document.replica.doc),
                timeout=self._settings.presence_timeout,
                on_outgoing=lambda: self._schedule(document),
            )
            document.presence = presence
            if self._loop is not None:
                # Links up already learn of it at its first change: an empty state shows
                # nothing. Links that open later get its full state.
                presence.start(self._loop)
                presence.arm()
            if document.pinned and self.on_presence is not None:
                self.on_presence(document.doc_id, presence.awareness)
        return document.presence

    def _requested(self, conn: MeshLink, doc_id: str) -> None:
        """The remote sent a frame for a document its link does not carry: carry it if we
        have it (or the store does) and may share it, else answer as one we lack."""
        remote = conn.link.remote_id
        shared = self._share(remote, doc_id)
        document = self.documents.get(doc_id) if shared else None
        if document is None and shared and self._serve is not None:
            replica = self._serve(doc_id)
            if replica is not None:
                logger.debug("= %s serves %s to %s", self._local_id, doc_id, remote)
                document = self._load(replica, pinned=False)  # added to this link too
        if document is None:
            conn.protocol.refuse_document(doc_id)
        elif not conn.protocol.carries(doc_id):
            self._add_to_link(conn, document)

    def _sync_held(self, remote: str, doc_id: str) -> None:
        """Start the sync of a document that a link held back while another link's first
        sync of it was in flight."""
        conn = self._conns.get(remote)
        if conn is not None and conn.protocol.carries(doc_id):
            conn.protocol.start_sync(doc_id)
            self._pump(conn)

    def _arm_unload(self) -> None:
        """Check for idle served documents every half ``unload_after`` while there are any."""
        if self._unload_timer is None and self._loop is not None and self._serve is not None:
            delay = self._settings.unload_after / 2
            self._unload_timer = self._loop.call_at(self._loop.time() + delay, self._unload_idle)

    def _unload_idle(self) -> None:
        assert self._loop is not None
        self._unload_timer = None
        for document in self.documents.idle(self._loop.time(), self._settings.unload_after):
            self._unload(document, tell=False)
        if self.served:
            self._arm_unload()
