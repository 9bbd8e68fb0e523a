"""Presence in one document: a presence core (``protocol/awareness.py``) on the event loop.

The core is built when the mesh starts (it reads the clock); once the room is joined its
timer renews our state and expires silent peers. Links feed the core what they receive,
the outbox drains what it has to send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pycrdt

from crdtsync.protocol.awareness import Presence

__all__ = ["MeshPresence"]


class MeshPresence:
    """One awareness object's presence core, its timer, and its life with the mesh."""

    def __init__(
        self, awareness: pycrdt.Awareness, *, timeout: float, on_outgoing: Callable[[], None]
    ) -> None:
        """``timeout``: how long a silent peer's presence lasts; ``on_outgoing()``: the core
        has updates to send."""
        self._awareness = awareness
        self._timeout = timeout
        self._on_outgoing = on_outgoing
        self._loop: asyncio.AbstractEventLoop | None = None
        self._core: Presence | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def awareness(self) -> pycrdt.Awareness:
        return self._awareness

    @property
    def started(self) -> bool:
        return self._core is not None

    @property
    def core(self) -> Presence:
        assert self._core is not None, "mesh not started"
        return self._core

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Build the core on ``loop``'s clock."""
        self._loop = loop
        self._core = Presence(
            self._awareness,
            now=loop.time(),
            outdated_timeout=self._timeout,
            on_outgoing=self._on_outgoing,
        )

    def arm(self) -> None:
        """Run the core's timer from now on (the room is joined)."""
        if self._closed:
            return
        assert self._loop is not None, "mesh not started"
        self._timer = self._loop.call_at(self.core.get_timer(), self._on_timer, self._loop)

    def close(self) -> None:
        """Stop the timer and the core's observing of the awareness object."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._core is not None:
            self._core.close()

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self.core.handle_timer(loop.time())
        self.arm()
