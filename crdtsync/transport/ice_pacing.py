"""How fast ICE connectivity checks follow each other: the other aioice internal we touch.

aioice paces its checks with a fixed 20 ms sleep in ``Connection.connect()`` (the Ta timer
of RFC 8445 section 6.1.4.2) and looks at the outcome only after each sleep, so a check that
succeeds in a millisecond on a LAN still costs 20 ms before the link moves on to DTLS.
Measured (``crdtsync bench interop``): that sleep was half of a Python peer's setup with a
Node y-webrtc peer, 43 ms against 28 ms for two Node peers; at 5 ms the pair takes 26 ms.
5 ms is the least RFC 8445 allows for Ta. ``install()`` swaps, for aioice's ICE module only,
the ``asyncio`` it sleeps with for one that shortens that one sleep; nothing else changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aioice.ice

__all__ = ["AIOICE_TA", "CHECK_PACING", "install", "paced"]

AIOICE_TA = 0.02  # the sleep between checks in aioice 0.13 ``Connection.connect()``
CHECK_PACING = 0.005  # seconds between checks: RFC 8445's floor for Ta


def paced(delay: float) -> float:
    """The sleep aioice gets for the one it asks for."""
    return CHECK_PACING if delay == AIOICE_TA else delay


class _PacedAsyncio:
    """asyncio, as aioice's ICE module sees it once installed: the same but for ``sleep``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        return await asyncio.sleep(paced(delay), result)


def install() -> None:
    """Pace aioice's connectivity checks at ``CHECK_PACING``; idempotent, once per process."""
    names = vars(aioice.ice)  # the module's globals: what its code means by ``asyncio``
    if not isinstance(names["asyncio"], _PacedAsyncio):
        names["asyncio"] = _PacedAsyncio()
