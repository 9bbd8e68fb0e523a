"""Which new links of the mesh sync at once: one first sync at a time, the others wait.

A link that opens while another link's first sync is in flight holds back its step 1: a
newcomer then gets the document once, not once per peer, and later links send only what
that first sync did not bring. The mesh asks ``admit`` when a link starts and says when a
sync completes or a link goes; the held links are released through its callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

__all__ = ["FIRST_SYNC_GRACE", "FirstSyncGate"]

# Links held back while another link's first sync is in flight sync anyway after this long,
# so a slow or silent peer delays them at most that much.
FIRST_SYNC_GRACE = 2.0

logger = logging.getLogger("crdtsync.mesh")  # the mesh's parts log as the mesh


class FirstSyncGate:
    """The link whose first sync is in flight, and the links that wait for it."""

    def __init__(self, local_id: str, release: Callable[[str], None]) -> None:
        """``release(remote)`` starts the sync of a held link, if it is still there."""
        self._local_id = local_id
        self._release = release
        self._first: str | None = None  # the link whose first sync is in flight
        self._held: set[str] = set()  # links that wait for it before they sync
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time the grace on ``loop`` from now on (the mesh has started)."""
        self._loop = loop

    def close(self) -> None:
        """Release nobody any more on a timer."""
        if self._timer is not None:
            self._timer.cancel()

    def admit(self, remote: str) -> bool:
        """Whether a new link to ``remote`` syncs now; if not, it is held until the first
        sync is done, gone, or FIRST_SYNC_GRACE has passed."""
        if self._first is None or self._first == remote:
            self._first = remote
            return True
        logger.debug(
            "= %s holds its sync with %s until the one with %s is done",
            self._local_id,
            remote,
            self._first,
        )
        self._held.add(remote)
        if self._timer is None:
            assert self._loop is not None, "mesh not started"
            self._timer = self._loop.call_at(
                self._loop.time() + FIRST_SYNC_GRACE, self._release_all
            )
        return False

    def completed(self, remote: str) -> None:
        """The link to ``remote`` completed a sync."""
        if remote == self._first:
            self._release_all()

    def unlinked(self, remote: str, *, replaced: bool) -> None:
        """The link to ``remote`` is gone (``replaced``: a newer link to it took its place)."""
        self._held.discard(remote)
        if remote == self._first and not replaced:
            self._release_all()

    def _release_all(self) -> None:
        """Let the held-back links sync now (the first sync is done, gone or too slow)."""
        self._first = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._held, set()
        for remote in held:
            self._release(remote)
