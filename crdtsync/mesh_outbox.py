"""What the mesh sends of its own: each document's updates and presence, batched and relayed.

Replicas and presences say when they have something (``schedule``); the outbox sends it at
the end of the tick or when the batching window closes (``protocol/batching.py``), to
every link that carries the document and that the relay rule picks (``_targets``), holding
updates back on a link whose send buffer is over its high-water mark until it drains
(``release_held``). Only documents with something pending are visited.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping

from crdtsync.mesh_documents import MeshDocument, MeshDocuments
from crdtsync.mesh_link import MeshLink
from crdtsync.mesh_settings import MeshSettings
from crdtsync.protocol.batching import BatchWindow
from crdtsync.protocol.link import Arrival, LinkState
from crdtsync.protocol.relay import Sources, flood_targets, merge_sources, update_targets
from crdtsync.replica import MERGE_GROUP, merge_many

__all__ = ["MeshOutbox"]

logger = logging.getLogger("crdtsync.mesh")  # the mesh's parts log as the mesh


class MeshOutbox:
    """One mesh's outgoing updates and presence: when they leave, and on which links."""

    def __init__(
        self,
        local_id: str,
        documents: MeshDocuments,
        conns: Mapping[str, MeshLink],
        settings: MeshSettings,
        *,
        pump: Callable[[MeshLink], None],
        notify: Callable[[], None],
    ) -> None:
        """``conns``: the mesh's links by remote id (live); ``pump(conn)`` writes what a
        link's core queued; ``notify()`` says congestion changed."""
        self._local_id = local_id
        self._documents = documents
        self._conns = conns
        self._send_buffer_high = settings.link.send_buffer_high
        self._pump = pump
        self._notify = notify
        self._batch = BatchWindow(settings.batch_window)
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send on ``loop`` from now on (and what became pending before)."""
        self._loop = loop
        if self._documents.has_pending:
            self._schedule_flush()

    def close(self) -> None:
        """Send what is pending, then nothing more."""
        self.flush()
        self._closed = True

    def schedule(self, document: MeshDocument) -> None:
        """``document`` has something to send: at the end of this tick, or when the window
        closes."""
        self._documents.mark_pending(document)
        self._schedule_flush()

    def flush(self) -> None:
        """Send what is pending now rather than at the end of this tick."""
        if self._sending:
            self._flush()
            return
        for document in self._documents.take_pending():  # nothing to send, but stored
            document.replica.take_outgoing()

    def release_held(self, conn: MeshLink) -> None:
        """Send what a congested link held back, one update per document."""
        held, conn.held = conn.held, {}
        held_sources, conn.held_sources = conn.held_sources, {}
        for doc_id, updates in held.items():
            update = merge_many(updates)
            logger.debug(
                "= %s releases %d held bytes of %s to %s",
                self._local_id,
                len(update),
                doc_id,
                conn.link,
            )
            conn.protocol.send_update(doc_id, update, held_sources.get(doc_id))

    def request_resyncs(self, why: str) -> None:
        """Ask the links we kept an update from to pull from us: we relayed on neighbour
        lists that named a link now lost, and their peer may have counted on it. A link
        asked since it last missed an update pulls after that update, so it is left out."""
        skipped = [conn for conn in self._conns.values() if conn.skipped]
        if skipped:
            logger.debug("> %s asks %d links to resync: %s", self._local_id, len(skipped), why)
        for conn in skipped:
            doc_ids, conn.skipped = conn.skipped, set()
            for doc_id in doc_ids:
                if conn.protocol.carries(doc_id):
                    conn.protocol.request_resync(doc_id)
            self._pump(conn)

    @property
    def _sending(self) -> bool:
        return self._loop is not None and not self._closed

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._sending:
            assert self._loop is not None
            self._flush_scheduled = True
            now = self._loop.time()
            due = self._batch.due(now)
            if due <= now:
                self._loop.call_soon(self._flush)  # quiet until now: no waiting
            else:
                self._loop.call_at(due, self._flush, True)

    def _flush(self, waited: bool = False) -> None:
        """Send everything documents produced since the last flush; ``waited`` when it
        waited for the batching window to close."""
        self._flush_scheduled = False
        if self._closed:
            return
        assert self._loop is not None, "mesh not started"
        now = self._loop.time()
        touched: dict[str, MeshLink] = {}
        for document in self._documents.take_pending():
            document.active_at = now
            doc_id = document.doc_id
            for outgoing in document.replica.take_outgoing():
                sources = self._sources(outgoing.origin)
                for remote, conn in self._targets(outgoing.origin, doc_id, sources):
                    self._send_update(conn, doc_id, outgoing.update, sources)
                    touched[remote] = conn
            if document.presence is not None and document.presence.started:
                for update in document.presence.core.updates_to_send(now):
                    for remote, conn in self._presence_targets(update.origin, doc_id):
                        conn.protocol.send_awareness(doc_id, update.update)
                        touched[remote] = conn
        if touched:
            self._batch.sent(now, waited=waited)
        for conn in touched.values():
            self._pump(conn)

    def _send_update(self, conn: MeshLink, doc_id: str, update: bytes, sources: Sources) -> None:
        """Send now, or hold while the link's send buffer is over the high-water mark."""
        if not conn.held and conn.link.buffered_amount <= self._send_buffer_high:
            conn.protocol.send_update(doc_id, update, sources)
            return
        if not conn.held:
            logger.debug("= %s holds updates for %s: link congested", self._local_id, conn.link)
            self._notify()
        held = conn.held.setdefault(doc_id, [])
        held.append(update)
        conn.held_sources[doc_id] = (
            merge_sources(conn.held_sources[doc_id], sources)
            if doc_id in conn.held_sources
            else sources
        )
        if len(held) >= MERGE_GROUP:  # keep what waits small: one merged update
            held[:] = [merge_many(held)]

    def _sources(self, origin: object | None) -> Sources:
        """Whose edits an outgoing update holds: ours, those its link said, or not known."""
        if origin is None:
            return frozenset({self._local_id})
        return origin.sources if isinstance(origin, Arrival) else None

    def _targets(
        self, origin: object | None, doc_id: str, sources: Sources
    ) -> Iterator[tuple[str, MeshLink]]:
        """The links that carry ``doc_id`` and that an update of it with these ``sources``
        goes to (``protocol/relay.py``). Only carriers' neighbour lists count: a peer known
        to link fewer others is sent more, never less."""
        arrival = self._arrival(origin.link if isinstance(origin, Arrival) else origin)
        conns = self._carriers(doc_id)
        lists = {remote: conn.neighbors for remote, conn in conns.items()}
        targets = update_targets(self._local_id, lists, sources=sources, arrival=arrival)
        for remote, conn in conns.items():
            if remote in targets:
                yield remote, conn
            elif remote != arrival:
                conn.skipped.add(doc_id)  # a peer may count on it: see request_resyncs

    def _presence_targets(
        self, origin: object | None, doc_id: str
    ) -> Iterator[tuple[str, MeshLink]]:
        """The links a presence update goes to: not back where it came from, and not to peers
        that have a link of their own with its source (that peer sends it to them)."""
        conns = self._carriers(doc_id)
        lists = {remote: conn.neighbors for remote, conn in conns.items()}
        for remote in flood_targets(lists, self._arrival(origin)):
            yield remote, conns[remote]

    def _carriers(self, doc_id: str) -> dict[str, MeshLink]:
        return {
            remote: conn
            for remote, conn in self._conns.items()
            if conn.protocol.state is not LinkState.CLOSED and conn.protocol.carries(doc_id)
        }

    def _arrival(self, origin: object | None) -> str | None:
        """The remote peer whose link core is ``origin``; None for anything else (a local
        edit, the store). Found by identity: an isinstance check against the runtime
        ``LinkCore`` protocol inspects every member, at each update."""
        for remote, conn in self._conns.items():
            if conn.protocol is origin:
                return remote
        return None
