"""Which links sync a document at once: one first sync per document at a time, the others wait.

A link that opens (or a document that opens on links already up) holds back its step 1 for
a document whose first sync is in flight on another link: a newcomer then gets each
document once, not once per peer, and later links send only what that first sync did not
bring. The mesh asks ``admit`` for each (link, document), says when a sync completes (or
the remote says it lacks the document) and when a link goes; held syncs are released
through its callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

__all__ = ["FIRST_SYNC_GRACE", "FirstSyncGate"]

# Syncs held back while another link's first sync of the document is in flight start anyway
# once first syncs have made no progress for this long, so a slow or silent peer delays
# them at most that much.
FIRST_SYNC_GRACE = 2.0

logger = logging.getLogger("crdtsync.mesh")  # the mesh's parts log as the mesh


class FirstSyncGate:
    """Per document: the link whose first sync is in flight, and the links that wait for it."""

    def __init__(self, local_id: str, release: Callable[[str, str], None]) -> None:
        """``release(remote, doc_id)`` starts the held sync of a document on a link, if that
        link is still there."""
        self._local_id = local_id
        self._release = release
        self._first: dict[str, str] = {}  # doc id: the remote whose first sync is in flight
        self._held: dict[str, set[str]] = {}  # doc id: the remotes waiting for it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time the grace on ``loop`` from now on (the mesh has started)."""
        self._loop = loop

    def close(self) -> None:
        """Release nobody any more on a timer."""
        if self._timer is not None:
            self._timer.cancel()

    def admit(self, remote: str, doc_id: str) -> bool:
        """Whether the link to ``remote`` syncs ``doc_id`` now; if not, it is held until the
        first sync is done, gone, or first syncs have stalled for FIRST_SYNC_GRACE."""
        first = self._first.setdefault(doc_id, remote)
        if first == remote:
            return True
        logger.debug(
            "= %s holds its sync of %s with %s until the one with %s is done",
            self._local_id,
            doc_id,
            remote,
            first,
        )
        self._held.setdefault(doc_id, set()).add(remote)
        if self._timer is None:
            assert self._loop is not None, "mesh not started"
            self._timer = self._loop.call_at(
                self._loop.time() + FIRST_SYNC_GRACE, self._release_all
            )
        return False

    def completed(self, remote: str, doc_id: str) -> None:
        """The link to ``remote`` completed a sync of ``doc_id`` (or the remote lacks it).
        First syncs are moving: the grace starts over, so a newcomer opening a thousand
        documents is not sent them twice because the first link takes more than the grace."""
        if self._first.get(doc_id) == remote:
            self._release_document(doc_id)
            if self._timer is not None and self._loop is not None:
                self._timer.cancel()
                self._timer = self._loop.call_at(
                    self._loop.time() + FIRST_SYNC_GRACE, self._release_all
                )

    def unlinked(self, remote: str, *, replaced: bool) -> None:
        """The link to ``remote`` is gone (``replaced``: a newer link to it took its place)."""
        for doc_id, held in list(self._held.items()):
            held.discard(remote)
            if not held:
                del self._held[doc_id]
        if not replaced:
            for doc_id in [doc for doc, first in self._first.items() if first == remote]:
                self._release_document(doc_id)

    def forget(self, doc_id: str) -> None:
        """``doc_id`` closed here: nothing waits for its sync any more."""
        self._first.pop(doc_id, None)
        self._held.pop(doc_id, None)

    def _release_document(self, doc_id: str) -> None:
        del self._first[doc_id]
        for remote in self._held.pop(doc_id, ()):
            self._release(remote, doc_id)

    def _release_all(self) -> None:
        """Let every held sync start now (the first syncs are done, gone or too slow)."""
        self._timer = None
        for doc_id in list(self._held):
            self._first.pop(doc_id, None)
            for remote in self._held.pop(doc_id):
                self._release(remote, doc_id)
        self._first.clear()
