"""Opens the subdocuments of a workspace's documents as documents of their own, and closes them.

The peer hands each document the host opens to ``SubdocLoader.track``; a ``SubdocTracker``
per document reports subdocuments as they appear in it (local edits, peers, the store), and
the loader opens each under ``subdoc_id(guid)`` with the very ``Doc`` instance that lives
inside the parent, and closes it when it leaves. pycrdt reports changes while a transaction
commits, so the loader acts then on the next turn of the running event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pycrdt

from crdtsync.errors import CrdtSyncError
from crdtsync.subdocs import SubdocAdded, SubdocTracker, guid_of, subdoc_id

__all__ = ["MAX_OPEN", "CloseDocument", "OpenDocument", "SubdocLoader"]

logger = logging.getLogger(__name__)

OpenDocument = Callable[[str, pycrdt.Doc[Any]], None]
CloseDocument = Callable[[str], None]

# Subdocuments open at once, at most: a workspace of thousands of files fits; a peer that
# writes a million Docs into a map cannot make us hold a million sync sessions. Those past
# the limit stay unsynced until their parent is opened again.
MAX_OPEN = 10_000


class SubdocLoader:
    """Keeps the workspace's subdocuments open exactly while a tracked document holds them.

    A guid held by two tracked documents is opened once, with the instance of the first that
    reported it; when that one lets it go, the other's instance takes over.
    """

    def __init__(
        self,
        open_document: OpenDocument,
        close_document: CloseDocument,
        *,
        max_open: int = MAX_OPEN,
    ) -> None:
        self.max_open = max_open
        self._open_document = open_document
        self._close_document = close_document
        self._trackers: dict[str, SubdocTracker] = {}  # by the doc id of the tracked document
        self._noted: dict[str, None] = {}  # tracked doc ids with news, oldest first
        self._owners: dict[str, str] = {}  # open subdocument's doc id -> tracked doc id
        self._handle: asyncio.Handle | None = None
        self._at_limit = False  # warned that max_open subdocuments are open
        self._closed = False

    @property
    def opened(self) -> frozenset[str]:
        """The doc ids of the subdocuments this loader opened and has not closed."""
        return frozenset(self._owners)

    def track(self, doc_id: str, doc: pycrdt.Doc[Any]) -> None:
        """Open the subdocuments document ``doc_id`` holds, at once and from now on; a
        document tracked already stays as it is."""
        if doc_id not in self._trackers and not self._closed:
            self._trackers[doc_id] = SubdocTracker(doc, on_change=lambda: self._note(doc_id))
            self._noted[doc_id] = None
            self.drain()

    def drain(self) -> None:
        """Open and close what the trackers noted; for changes made while no event loop ran
        (the peer calls it as it starts)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        noted, self._noted = self._noted, {}  # only those with news: opening a thousand
        for doc_id in noted:  # documents costs a thousand looks, not half a million
            tracker = self._trackers.get(doc_id)
            if tracker is None:
                continue
            for event in tracker.events_received():
                sub_id = subdoc_id(event.guid)  # the tracker reports valid guids only
                if isinstance(event, SubdocAdded):
                    self._open(doc_id, sub_id, event.doc)
                elif self._owners.get(sub_id) == doc_id:
                    self._close(sub_id)

    def untrack(self, doc_id: str) -> None:
        """Stop tracking ``doc_id`` and close the subdocuments opened for it."""
        tracker = self._trackers.pop(doc_id, None)
        if tracker is not None:
            tracker.close()
            for sub_id in [sub_id for sub_id, owner in self._owners.items() if owner == doc_id]:
                self._close(sub_id)

    def close(self) -> None:
        """Stop every tracker, open nothing more; idempotent. Closes no document: the
        workspace closes them all itself."""
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for tracker in self._trackers.values():
            tracker.close()
        self._trackers.clear()
        self._owners.clear()

    def _note(self, doc_id: str) -> None:
        """Inside pycrdt's commit: drain on the loop's next turn (or at ``drain()``)."""
        self._noted[doc_id] = None
        if self._handle is None and not self._closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop runs: the next drain() finds what the trackers noted
            self._handle = loop.call_soon(self.drain)

    def _open(self, owner: str, sub_id: str, doc: pycrdt.Doc[Any]) -> None:
        if sub_id in self._owners:
            logger.debug("= %s is open for %s already", sub_id, self._owners[sub_id])
            return
        if len(self._owners) >= self.max_open:
            if not self._at_limit:  # once per flood, not once per subdocument
                self._at_limit = True
                logger.warning("! %d subdocuments open, the limit: no more open", self.max_open)
            logger.debug("! %s (held by %s) not opened: at the limit", sub_id, owner)
            return
        try:
            self._open_document(sub_id, doc)
        except CrdtSyncError as exc:  # a store that fails to load it, say
            logger.warning("! could not open %s (held by %s): %s", sub_id, owner, exc)
            return
        self._owners[sub_id] = owner
        logger.debug("= opened %s, held by %s", sub_id, owner)

    def _close(self, sub_id: str) -> None:
        owner = self._owners.pop(sub_id)
        self._at_limit = False
        self._close_document(sub_id)
        logger.debug("= closed %s, no longer held by %s", sub_id, owner)
        guid = guid_of(sub_id)
        for doc_id, tracker in self._trackers.items():
            doc = tracker.subdocs.get(guid) if doc_id != owner and guid is not None else None
            if doc is not None:
                self._open(doc_id, sub_id, doc)
                break
