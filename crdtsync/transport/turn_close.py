"""How long closing a TURN allocation may take: the third aioice internal we touch.

Closing a connection makes aioice delete its TURN allocation (a REFRESH with lifetime 0),
retransmitted as any STUN request: 0.5 s doubling, seven sends, 63.5 s before it gives up.
Against a TURN server that died, that is how long ``RTCPeerConnection.close()`` blocks, per
allocation. Measured here: two relay-only connections closed 97 s after their coturn was
killed. ``install()`` bounds each deletion at ``DELETE_TIMEOUT``; aioice closes the socket
however the deletion ends, and the server frees an allocation nobody deleted when its
lifetime runs out (RFC 8656 section 6, 600 s in aioice).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aioice.turn
from aioice.turn import TurnClientMixin

__all__ = ["DELETE_TIMEOUT", "install"]

logger = logging.getLogger(__name__)

# A live TURN server answers within a round trip (~1 ms here, ~100 ms across the world); this
# leaves room for one retransmission (aioice's first comes after 0.5 s).
DELETE_TIMEOUT = 1.0

_original: Callable[[TurnClientMixin], Awaitable[None]] | None = None


async def _bounded_delete(protocol: TurnClientMixin) -> None:
    assert _original is not None
    try:
        async with asyncio.timeout(DELETE_TIMEOUT):
            await _original(protocol)
    except TimeoutError:
        logger.info(
            "! TURN server %s did not answer the deletion of allocation %s within %g s: "
            "left to expire",
            protocol.server,
            protocol.relayed_address,
            DELETE_TIMEOUT,
        )


def install() -> None:
    """Bound every TURN allocation's deletion at ``DELETE_TIMEOUT``; idempotent."""
    global _original
    if _original is None:
        _original = aioice.turn.TurnClientMixin.delete
        aioice.turn.TurnClientMixin.delete = _bounded_delete  # type: ignore[method-assign,assignment]
