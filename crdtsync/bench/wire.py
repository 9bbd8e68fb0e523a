"""Data-channel messages and bytes this process sends, counted where aiortc takes them.

The benchmarks that set contenders side by side report messages and bytes per edit for each;
``Peer.bytes_sent`` counts bytes, but nothing in the mesh counts messages, so the count is
taken at ``RTCDataChannel.send`` for as long as ``counting_sends`` is entered (every peer of
the process at once, as Node's per-connection ``messagesSent`` stats are summed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiortc import RTCDataChannel

__all__ = ["WireCount", "counting_sends"]


@dataclass(slots=True)
class WireCount:
    """Messages and payload bytes sent so far."""

    messages: int = 0
    bytes: int = 0


@contextmanager
def counting_sends() -> Iterator[WireCount]:
    """Count every data-channel message sent in this process while entered."""
    original = RTCDataChannel.send
    count = WireCount()

    def send(self: RTCDataChannel, data: bytes | str) -> None:
        original(self, data)
        count.messages += 1
        count.bytes += len(data.encode() if isinstance(data, str) else data)

    RTCDataChannel.send = send  # type: ignore[method-assign]
    try:
        yield count
    finally:
        RTCDataChannel.send = original  # type: ignore[method-assign]
