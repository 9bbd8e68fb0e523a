"""Opens the subdocuments of a workspace's documents as documents of their own, and closes them.

The workspace hands each document it opens to ``SubdocLoader.track``; a ``SubdocTracker``
per document reports subdocuments as they appear in it (from local edits, peers, or the
store), and the loader's one task opens each under ``subdoc_id(guid)`` with the very ``Doc``
instance that lives inside the parent, and closes it when it leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pycrdt

from crdtsync.errors import CrdtSyncError, LocalProtocolError
from crdtsync.subdocs import SubdocAdded, SubdocTracker, subdoc_id

__all__ = ["CloseDocument", "OpenDocument", "SubdocLoader"]

logger = logging.getLogger(__name__)

OpenDocument = Callable[[str, pycrdt.Doc[Any]], Awaitable[object]]
CloseDocument = Callable[[str], Awaitable[None]]


class SubdocLoader:
    """Keeps the workspace's subdocuments open exactly while a tracked document holds them.

    A guid held by two tracked documents is opened once, for the first that reported it.
    """

    def __init__(self, open_document: OpenDocument, close_document: CloseDocument) -> None:
        self._open_document = open_document
        self._close_document = close_document
        self._trackers: dict[str, SubdocTracker] = {}  # by the doc id of the tracked document
        self._owners: dict[str, str] = {}  # open subdocument's doc id -> tracked doc id
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def opened(self) -> frozenset[str]:
        """The doc ids of the subdocuments this loader opened and has not closed."""
        return frozenset(self._owners)

    def start(self) -> None:
        """Start the task that opens and closes subdocuments (in the running loop)."""
        if self._task is not None:
            raise LocalProtocolError("subdocument loader already started")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="subdoc loader")

    def track(self, doc_id: str, doc: pycrdt.Doc[Any]) -> None:
        """Open, from now on, the subdocuments document ``doc_id`` holds (those it holds now
        included)."""
        if doc_id in self._trackers:
            raise LocalProtocolError(f"document {doc_id!r} is tracked already")
        self._trackers[doc_id] = SubdocTracker(doc, on_change=self._wake.set)
        self._wake.set()

    async def untrack(self, doc_id: str) -> None:
        """Stop tracking ``doc_id`` and close the subdocuments opened for it."""
        tracker = self._trackers.pop(doc_id, None)
        if tracker is None:
            return
        tracker.close()
        for sub_id in [sub_id for sub_id, owner in self._owners.items() if owner == doc_id]:
            await self._close(sub_id)

    async def aclose(self) -> None:
        """Stop the task and every tracker; idempotent. Closes no document: the workspace
        closes them all itself."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._aclose())
        await asyncio.shield(self._closing)

    async def _aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # unlike awaiting it, keeps our own cancellation
        for tracker in self._trackers.values():
            tracker.close()
        self._trackers.clear()
        self._owners.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for doc_id, tracker in list(self._trackers.items()):
                for event in tracker.events_received():
                    sub_id = subdoc_id(event.guid)  # the tracker reports valid guids only
                    if isinstance(event, SubdocAdded):
                        await self._open(doc_id, sub_id, event.doc)
                    elif self._owners.get(sub_id) == doc_id:
                        await self._close(sub_id)

    async def _open(self, owner: str, sub_id: str, doc: pycrdt.Doc[Any]) -> None:
        if sub_id in self._owners:
            logger.debug("= %s is open for %s already", sub_id, self._owners[sub_id])
            return
        try:
            await self._open_document(sub_id, doc)
        except CrdtSyncError as exc:
            logger.warning("! could not open %s (held by %s): %s", sub_id, owner, exc)
            return
        self._owners[sub_id] = owner
        logger.debug("= opened %s, held by %s", sub_id, owner)

    async def _close(self, sub_id: str) -> None:
        owner = self._owners.pop(sub_id)
        try:
            await self._close_document(sub_id)
        except CrdtSyncError as exc:
            logger.warning("! could not close %s (held by %s): %s", sub_id, owner, exc)
            return
        logger.debug("= closed %s, no longer held by %s", sub_id, owner)
