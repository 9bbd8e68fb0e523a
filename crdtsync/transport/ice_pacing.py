"""How fast ICE connectivity checks follow each other, and how long each is retried: the
other aioice internal we touch.

aioice paces its checks with a fixed 20 ms sleep in ``Connection.connect()`` (the Ta timer
of RFC 8445 section 6.1.4.2) and looks at the outcome only after each sleep, so a check that
succeeds in a millisecond on a LAN still costs 20 ms before the link moves on to DTLS.
Measured (``crdtsync bench interop``): that sleep was half of a Python peer's setup with a
Node y-webrtc peer, 43 ms against 28 ms for two Node peers; at 5 ms the pair takes 26 ms.
5 ms is the least RFC 8445 allows for Ta. ``install()`` swaps, for aioice's ICE module only,
the ``asyncio`` it sleeps with for one that shortens that one sleep.

aioice also retries an unanswered check as STUN does (RFC 5389 7.2.1), doubling the wait
from 0.5 s: after an outage of UDP, a dial under way sent its last checks at 3.5 s and 7.5 s
and then nothing until our 15 s connect timeout, so links came back up to ~7.5 s after the
network healed (measured with 3 peer processes and blackouts of 11-20 s: 0.30-7.33 s by
where the heal fell, median 3.77 s; with this, 0.11-0.63 s, median 0.57 s). Like
libwebrtc, which keeps pinging a pair that is not yet writable, checks here retry at
most ``CHECK_RETRY_CAP`` apart for as long as a dial lasts: a healed path is found within
about a second, and no extra dial (no extra signaling) is needed. Only the STUN transactions
of aioice's ICE module (checks, consent, server-reflexive gathering) see this; TURN's own
transactions keep STUN's timing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aioice.ice
import aioice.stun

__all__ = [
    "AIOICE_TA",
    "CHECK_PACING",
    "CHECK_RETRIES",
    "CHECK_RETRY_CAP",
    "SteadyTransaction",
    "install",
    "paced",
]

AIOICE_TA = 0.02  # the sleep between checks in aioice 0.13 ``Connection.connect()``
CHECK_PACING = 0.005  # seconds between checks: RFC 8445's floor for Ta
# Seconds between retries of one unanswered check at most (STUN's wait doubles from 0.5 s
# after every try): a healed path is found within about this long.
CHECK_RETRY_CAP = 1.0
# Retries of a check when aioice asks for STUN's default (6): 23 sends, the last 21.5 s in,
# past our 15 s connect timeout, so a check outlives the dial that sent it, as with STUN's.
CHECK_RETRIES = 22


def paced(delay: float) -> float:
    """The sleep aioice gets for the one it asks for."""
    return CHECK_PACING if delay == AIOICE_TA else delay


class _PacedAsyncio:
    """asyncio, as aioice's ICE module sees it once installed: the same but for ``sleep``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        return await asyncio.sleep(paced(delay), result)


class SteadyTransaction(aioice.stun.Transaction):
    """A STUN transaction whose retries come at most ``CHECK_RETRY_CAP`` apart, and more of
    them when the caller left the count to STUN's default."""

    def __init__(
        self,
        request: aioice.stun.Message,
        addr: tuple[str, int],
        protocol: aioice.stun.TransactionSender,
        retransmissions: int | None = None,
        integrity_key: bytes | None = None,
        long_term_credential: bool = False,
    ) -> None:
        self._retry_delay = aioice.stun.RETRY_RTO
        super().__init__(
            request,
            addr,
            protocol,
            retransmissions=CHECK_RETRIES if retransmissions is None else retransmissions,
            integrity_key=integrity_key,
            long_term_credential=long_term_credential,
        )

    # aioice keeps the wait before the next retry in this (name-mangled) attribute and
    # doubles it after each send; a property caps what it stores.
    @property
    def _Transaction__timeout_delay(self) -> float:
        return self._retry_delay

    @_Transaction__timeout_delay.setter
    def _Transaction__timeout_delay(self, delay: float) -> None:
        self._retry_delay = min(delay, CHECK_RETRY_CAP)


class _SteadyStun:
    """aioice's ``stun`` module, as its ICE module sees it once installed: the same but for
    ``Transaction``."""

    Transaction = SteadyTransaction

    def __getattr__(self, name: str) -> Any:
        return getattr(aioice.stun, name)


def install() -> None:
    """Pace aioice's connectivity checks at ``CHECK_PACING`` and retry them at most
    ``CHECK_RETRY_CAP`` apart; idempotent, once per process."""
    names = vars(aioice.ice)  # the module's globals: what its code means by these names
    if not isinstance(names["asyncio"], _PacedAsyncio):
        names["asyncio"] = _PacedAsyncio()
    if not isinstance(names["stun"], _SteadyStun):
        names["stun"] = _SteadyStun()
