"""The mesh's documents: replicas open here, their presence, and which have news to send.

A document is *pinned* while the host has it open (``Peer.open``), or *served*: loaded
because a remote asked for it (from the store), and unloaded again once idle, so a keeper
of thousands of stored documents holds in memory only those in use. Only documents with
something pending are visited at a flush, so a workspace of a thousand costs what its busy
few cost.
"""

from __future__ import annotations

from collections.abc import Iterator

from crdtsync.errors import LocalProtocolError
from crdtsync.mesh_presence import MeshPresence
from crdtsync.replica import Replica

__all__ = ["MeshDocument", "MeshDocuments"]


class MeshDocument:
    """One document as the mesh keeps it."""

    __slots__ = ("active_at", "pinned", "presence", "replica")

    def __init__(self, replica: Replica, *, pinned: bool, now: float) -> None:
        self.replica = replica
        self.pinned = pinned
        self.active_at = now  # loop time of its last update in or out
        # Made on demand: a workspace of a thousand documents has presence in the few that
        # the host or a remote uses it in.
        self.presence: MeshPresence | None = None

    @property
    def doc_id(self) -> str:
        return self.replica.doc_id


class MeshDocuments:
    """Every document loaded here, by id, and those with updates or presence pending."""

    def __init__(self) -> None:
        self._documents: dict[str, MeshDocument] = {}
        self._pending: dict[str, MeshDocument] = {}  # insertion order: oldest news first
        self._pinned: set[str] = set()
        self._pinned_view: frozenset[str] | None = frozenset()  # None: to build again

    def __iter__(self) -> Iterator[MeshDocument]:
        return iter(list(self._documents.values()))

    @property
    def pinned(self) -> frozenset[str]:
        """The ids of the documents the host has open."""
        if self._pinned_view is None:
            self._pinned_view = frozenset(self._pinned)
        return self._pinned_view

    def is_pinned(self, doc_id: str) -> bool:
        return doc_id in self._pinned

    def get(self, doc_id: str) -> MeshDocument | None:
        return self._documents.get(doc_id)

    def add(self, document: MeshDocument) -> None:
        if document.doc_id in self._documents:
            raise LocalProtocolError(f"document {document.doc_id!r} is loaded already")
        self._documents[document.doc_id] = document
        if document.pinned:
            self.pin(document)

    def pin(self, document: MeshDocument) -> None:
        document.pinned = True
        self._pinned.add(document.doc_id)
        self._pinned_view = None

    def remove(self, doc_id: str) -> MeshDocument:
        document = self._documents.pop(doc_id)
        self._pending.pop(doc_id, None)
        if document.pinned:
            self._pinned.discard(doc_id)
            self._pinned_view = None
        return document

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def mark_pending(self, document: MeshDocument) -> None:
        """Note that ``document`` has something to send."""
        if document.doc_id in self._documents:  # not one closed meanwhile
            self._pending[document.doc_id] = document

    def take_pending(self) -> list[MeshDocument]:
        """The documents with something to send, oldest news first; none are pending after."""
        pending, self._pending = list(self._pending.values()), {}
        return pending

    def idle(self, now: float, after: float) -> list[MeshDocument]:
        """Served documents with no update in or out for ``after`` seconds."""
        return [
            document
            for document in self._documents.values()
            if not document.pinned and now - document.active_at >= after
        ]
