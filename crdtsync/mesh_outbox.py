"""What the mesh sends of its own: the replica's updates and presence, batched and relayed.

The replica and presence say when they have something (``schedule``); the outbox sends it
at the end of the tick or when the batching window closes (``protocol/batching.py``), to
every link the relay rule picks (``_targets``), holding updates back on a link whose send
buffer is over its high-water mark until it drains (``release_held``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping

from crdtsync.mesh_link import MeshLink
from crdtsync.mesh_settings import MeshSettings
from crdtsync.protocol.awareness import Presence
from crdtsync.protocol.batching import BatchWindow
from crdtsync.protocol.link import LinkCore, LinkState
from crdtsync.replica import MERGE_GROUP, Replica, merge_many

__all__ = ["MeshOutbox"]

logger = logging.getLogger("crdtsync.mesh")  # the mesh's parts log as the mesh


class MeshOutbox:
    """One mesh's outgoing updates and presence: when they leave, and on which links."""

    def __init__(
        self,
        local_id: str,
        replica: Replica,
        conns: Mapping[str, MeshLink],
        settings: MeshSettings,
        *,
        pump: Callable[[MeshLink], None],
        notify: Callable[[], None],
    ) -> None:
        """``conns``: the mesh's links by remote id (live); ``pump(conn)`` writes what a
        link's core queued; ``notify()`` says congestion changed."""
        self._local_id = local_id
        self._replica = replica
        self._conns = conns
        self._send_buffer_high = settings.link.send_buffer_high
        self._pump = pump
        self._notify = notify
        self._batch = BatchWindow(settings.batch_window)
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._presence: Presence | None = None
        self._closed = False

    def start(self, loop: asyncio.AbstractEventLoop, presence: Presence) -> None:
        """Send on ``loop`` from now on, presence updates included."""
        self._loop = loop
        self._presence = presence

    def close(self) -> None:
        """Send what is pending, then nothing more."""
        if self._sending:
            self._flush()
        self._closed = True

    def schedule(self) -> None:
        """Something is pending: send it at the end of this tick, or when the window closes."""
        if not self._flush_scheduled and self._loop is not None and not self._closed:
            self._flush_scheduled = True
            now = self._loop.time()
            due = self._batch.due(now)
            if due <= now:
                self._loop.call_soon(self._flush)  # quiet until now: no waiting
            else:
                self._loop.call_at(due, self._flush, True)

    def flush(self) -> None:
        """Send what is pending now rather than at the end of this tick."""
        if self._sending:
            self._flush()
        else:
            self._replica.take_outgoing()  # not started, or closed: nothing to send, but stored

    def release_held(self, conn: MeshLink) -> None:
        """Send what a congested link held back, as one update."""
        if conn.held:
            update = merge_many(conn.held)
            conn.held.clear()
            logger.debug(
                "= %s releases %d held bytes to %s", self._local_id, len(update), conn.link
            )
            conn.protocol.send_update(self._replica.doc_id, update)

    @property
    def _sending(self) -> bool:
        return self._loop is not None and not self._closed

    def _flush(self, waited: bool = False) -> None:
        """Send everything the replica and presence produced since the last flush; ``waited``
        when it waited for the batching window to close."""
        self._flush_scheduled = False
        if self._closed:
            return
        loop, presence = self._loop, self._presence
        assert loop is not None, "mesh not started"
        assert presence is not None, "mesh not started"
        touched: dict[str, MeshLink] = {}
        doc_id = self._replica.doc_id
        for outgoing in self._replica.take_outgoing():
            for remote, conn in self._targets(outgoing.origin):
                self._send_update(conn, outgoing.update)
                touched[remote] = conn
        for update in presence.updates_to_send(loop.time()):
            for remote, conn in self._targets(update.origin):
                conn.protocol.send_awareness(doc_id, update.update)
                touched[remote] = conn
        if touched:
            self._batch.sent(loop.time(), waited=waited)
        for conn in touched.values():
            self._pump(conn)

    def _send_update(self, conn: MeshLink, update: bytes) -> None:
        """Send now, or hold while the link's send buffer is over the high-water mark."""
        if not conn.held and conn.link.buffered_amount <= self._send_buffer_high:
            conn.protocol.send_update(self._replica.doc_id, update)
            return
        if not conn.held:
            logger.debug("= %s holds updates for %s: link congested", self._local_id, conn.link)
            self._notify()
        conn.held.append(update)
        if len(conn.held) >= MERGE_GROUP:  # keep what waits small: one merged update
            conn.held[:] = [merge_many(conn.held)]

    def _targets(self, origin: object | None) -> Iterator[tuple[str, MeshLink]]:
        """The links an update goes to: not back where it came from, and not to peers that
        have a link of their own with its source (that peer sends it to them)."""
        source = origin.remote_id if isinstance(origin, LinkCore) else None
        for remote, conn in list(self._conns.items()):
            if conn.protocol.state is LinkState.CLOSED or conn.protocol is origin:
                continue
            if source is not None and source in conn.neighbors:
                continue
            yield remote, conn
