"""A room of simulated peers in one line, for tests of applications built on crdtsync."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pycrdt

from crdtsync.errors import ConfigError
from crdtsync.peer import Peer
from crdtsync.transport.memory import SimNetwork

__all__ = ["sim_room"]


@asynccontextmanager
async def sim_room(
    network: SimNetwork,
    count: int | None = None,
    *,
    docs: Sequence[pycrdt.Doc[Any]] | None = None,
    room: str = "room",
    timeout: float = 10.0,
    **peer_options: Any,
) -> AsyncIterator[list[Peer]]:
    """Start ``count`` peers (or one per doc in ``docs``) in ``room``, linked and synced.

    Yields the peers once each has a link and step 2 from every linked peer; closes them all
    on exit. ``peer_options`` go to every ``Peer`` (``max_conns=3``, ...).
    """
    if docs is None:
        if count is None or count < 1:
            raise ConfigError(f"sim_room needs count >= 1 or docs (got count={count})")
        docs = [pycrdt.Doc() for _ in range(count)]
    elif count is not None and count != len(docs):
        raise ConfigError(f"sim_room got count={count} but {len(docs)} docs")
    peers = [Peer(doc, room=room, network=network, **peer_options) for doc in docs]
    async with AsyncExitStack() as stack:
        for peer in peers:
            await stack.enter_async_context(peer)
        # In a full mesh every peer links with every other; in a partial one at least one.
        others = len(peers) - 1
        full_mesh = peer_options.get("max_conns", others) >= others
        for peer in peers:
            await peer.wait_for_peers(others if full_mesh else 1, timeout)
        for peer in peers:
            await peer.wait_synced(timeout)
        yield peers
