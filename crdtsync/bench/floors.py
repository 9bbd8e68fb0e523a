"""What a newcomer's opening of many documents cannot go below, measured beside it.

``bench workspace`` times a newcomer fetching every document from two holders against
applying the same updates to fresh ``Doc``s in one process. Two parts of the newcomer's
time are no code of ours, and each is timed here in the same run, so that the report says
how much of the ratio is left to win:

- **the sync protocol's own pycrdt calls**: for each document, with two holders, the calls
  y-protocols' two-step sync needs and nothing else: the newcomer's step 1 to the first
  holder and that holder's step 2 (applied); its step 1 to the second holder (which has
  nothing more to send); the second holder's step 1 and the newcomer's step 2 (applied
  there). The second exchange is what "in sync with every linked peer that holds it"
  costs: the newcomer cannot know the second holder has nothing new without asking.
- **the transport carrying its bytes**: the bytes the newcomer received, in as many
  messages, sent over one WebRTC data channel between two connectors of this process (as
  the benchmark's peers are), through the same signaling server; the clock runs from the
  first send until the last byte arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pycrdt

from crdtsync.bench.rooms import LOOPBACK
from crdtsync.errors import SyncTimeoutError
from crdtsync.protocol.yupdate import EMPTY_UPDATE
from crdtsync.transport.base import Link
from crdtsync.transport.webrtc import WebRTCConnector

__all__ = ["sync_calls", "transport_carries"]

TIMEOUT = 60.0  # for the link to open, and for the bytes to arrive


def sync_calls(first: Sequence[pycrdt.Doc[Any]], second: Sequence[pycrdt.Doc[Any]]) -> float:
    """Seconds of the pycrdt calls a newcomer's sync of each document with two holders
    (``first[i]``, ``second[i]``: the same content) needs, one document after another."""
    started = time.perf_counter()
    for one, other in zip(first, second, strict=True):
        doc: pycrdt.Doc[Any] = pycrdt.Doc()
        doc.apply_update(one.get_update(doc.get_state()))
        missing = other.get_update(doc.get_state())
        if missing != EMPTY_UPDATE:
            doc.apply_update(missing)
        other.apply_update(doc.get_update(other.get_state()))
    return time.perf_counter() - started


class _Receiver:
    """A connector's listener that counts the bytes arriving on its links."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.opened: asyncio.Future[Link] = asyncio.get_running_loop().create_future()
        self.arrived = asyncio.Event()

    def members_changed(self, members: frozenset[str]) -> None:
        pass

    def link_opened(self, link: Link) -> None:
        if not self.opened.done():
            self.opened.set_result(link)

    def link_failed(self, remote_id: str, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(SyncTimeoutError(f"no link to {remote_id}: {reason}"))

    def data_received(self, link: Link, data: bytes) -> None:
        self.received += len(data)
        if self.received >= self.expected:
            self.arrived.set()

    def link_drained(self, link: Link) -> None:
        pass

    def link_lost(self, link: Link, reason: str) -> None:
        pass


async def transport_carries(url: str, room: str, total: int, messages: int) -> float:
    """Seconds for one data channel to carry ``total`` bytes in ``messages`` messages of
    equal size, from the first send until the last byte arrived."""
    size, rest = divmod(total, messages)
    sender_side = _Receiver(0)
    receiver_side = _Receiver(total)
    sender = WebRTCConnector(url, room, host_addresses=LOOPBACK)
    receiver = WebRTCConnector(url, room, host_addresses=LOOPBACK)
    try:
        async with asyncio.timeout(TIMEOUT):
            await sender.start(sender_side)
            await receiver.start(receiver_side)
            sender.dial(receiver.local_id)
            link = await sender_side.opened
            await receiver_side.opened
            started = time.perf_counter()
            for index in range(messages):
                link.send(bytes(size + (1 if index < rest else 0)))
            await receiver_side.arrived.wait()
            return time.perf_counter() - started
    finally:
        await asyncio.gather(sender.aclose(), receiver.aclose())
