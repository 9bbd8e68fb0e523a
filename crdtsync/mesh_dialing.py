"""Whom the mesh dials and when: the adapter of its dial policy (``protocol/dialing.py``).

It keeps the room's members as the connector last said and the dials under way, asks the
policy whom to dial, dials through the connector, comes back when a backoff ends, and
settles glare (which of two links to one peer both sides keep). The mesh tells it what
happened to links; it never sees their cores.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Set

from crdtsync.mesh_settings import MeshSettings
from crdtsync.protocol.dialing import DialPolicy
from crdtsync.protocol.events import LinkClosed
from crdtsync.protocol.frames import CloseCode
from crdtsync.transport.base import Connector, Link

__all__ = ["VIOLATIONS", "MeshDialing"]

# Closes that mean the remote peer broke the protocol or a limit.
VIOLATIONS = frozenset(
    {CloseCode.PROTOCOL_ERROR, CloseCode.UNSUPPORTED_VERSION, CloseCode.TOO_BIG, CloseCode.POLICY}
)

logger = logging.getLogger("crdtsync.mesh")  # the mesh's parts log as the mesh


class MeshDialing:
    """One mesh's dials: the members, the dials under way, the backoff timer."""

    def __init__(
        self,
        connector: Connector,
        settings: MeshSettings,
        rng: random.Random,
        linked: Set[str],
    ) -> None:
        """``linked``: a live view of the remotes the mesh has a link to."""
        self._connector = connector
        self._linked = linked
        self._policy = DialPolicy(
            connector.local_id,
            max_conns=settings.max_conns,
            reconnect_base=settings.reconnect_base,
            reconnect_cap=settings.reconnect_cap,
            rng=rng,
        )
        self._members: frozenset[str] = frozenset()
        self._under_way: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def members(self) -> frozenset[str]:
        """The other peers in the room, as the connector last said."""
        return self._members

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Dial on ``loop`` from now on (the mesh has started)."""
        self._loop = loop

    def close(self) -> None:
        """Dial no more."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()

    def members_changed(self, members: frozenset[str]) -> None:
        logger.debug("= %s sees members %s", self._connector.local_id, sorted(members))
        self._members = members
        self._policy.members_changed(members)
        self._maintain()

    def keeps_older(self, older: Link, newer: Link) -> bool:
        """Glare: both sides keep the link dialed by the smaller id (the newer one if the
        same side dialed twice: it gave the old one up), so both make the same choice."""
        return self._dialer(older) < self._dialer(newer)

    def opened(self, remote: str) -> None:
        """A link to ``remote`` opened (kept or not): no dial to it is under way."""
        self._under_way.discard(remote)

    def linked(self, remote: str) -> None:
        """``remote`` said HELLO: its backoff starts over."""
        self._policy.linked(remote)

    def link_failed(self, remote: str, reason: str, now: float) -> None:
        """A dial to ``remote`` failed at ``now``: back off, then dial again if still wanted."""
        logger.info("! %s could not link to %s: %s", self._connector.local_id, remote, reason)
        self._under_way.discard(remote)
        self._policy.failed(remote, now)
        self._maintain()

    def lost(self, remote: str, closed: LinkClosed, now: float) -> None:
        """A link to ``remote`` closed at ``now``: back off before redialing, longer if we
        closed it for the remote's bad input."""
        if not closed.by_remote and closed.code in VIOLATIONS:
            self._policy.violated(remote)
        self._policy.failed(remote, now)
        self._maintain()

    def _maintain(self) -> None:
        """Dial whom the policy says; come back when a backoff ends."""
        if self._closed or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        dials, retry_at = self._policy.due(
            self._loop.time(), self._members, self._linked | self._under_way
        )
        for remote in dials:
            logger.debug("> %s dials %s", self._connector.local_id, remote)
            self._under_way.add(remote)
            self._policy.dialed(remote, self._loop.time())
            self._connector.dial(remote)
        if retry_at is not None:
            self._timer = self._loop.call_at(retry_at, self._maintain)

    def _dialer(self, link: Link) -> str:
        return self._connector.local_id if link.initiator else link.remote_id
