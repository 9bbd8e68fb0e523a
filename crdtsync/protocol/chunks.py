"""Encoded frames onto transport messages: big ones cut into CHUNKs, small ones batched.

A transport message holds at most ``max_message_size`` bytes (aiortc advertises 65,536).
A bigger frame goes out as CHUNK frames and is joined again by a :class:`Reassembler`;
frames queued together travel back to back in as few messages as fit
(:func:`batch_messages`), which ``frames.decode_frames`` reads apart.
"""

from __future__ import annotations

from crdtsync.errors import LocalProtocolError, ProtocolError
from crdtsync.protocol.frames import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    Chunk,
    CloseCode,
    encode_frame,
)

__all__ = ["Reassembler", "batch_messages", "split_frame"]

_MAX_UINT64 = 2**64 - 1


def _packed_uint_size(value: int) -> int:
    """Bytes msgpack uses for a non-negative int (fixint, uint8, uint16, uint32, uint64)."""
    for size, limit in ((1, 0x7F), (2, 0xFF), (3, 0xFFFF), (5, 0xFFFFFFFF)):
        if value <= limit:
            return size
    return 9


def split_frame(
    encoded: bytes, *, message_id: int, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> list[bytes]:
    """Transport messages carrying ``encoded``: itself if it fits, else encoded CHUNK frames.

    Each returned message is at most ``max_message_size`` bytes. ``message_id`` tells one
    chunked frame from the next; the receiver feeds the chunks to a :class:`Reassembler`.
    """
    if len(encoded) <= max_message_size:
        return [encoded]
    if isinstance(message_id, bool) or not 0 <= message_id <= _MAX_UINT64:
        raise LocalProtocolError(f"message_id must be in 0..2**64-1 (got {message_id!r})")
    total = len(encoded)
    # A CHUNK frame is [5, "", [message_id, index, count, data]]: four one-byte headers
    # (two fixarrays, fixint 5, empty fixstr), three ints (index < count <= total), then
    # the bin header (2, 3 or 5 bytes depending on the data length) and the data.
    overhead = 4 + _packed_uint_size(message_id) + 2 * _packed_uint_size(total)
    size = max(
        min(limit, max_message_size - overhead - header)
        for header, limit in ((2, 0xFF), (3, 0xFFFF), (5, 0xFFFFFFFF))
    )
    if size < 1:
        raise LocalProtocolError(
            f"max_message_size {max_message_size} leaves no room for chunk data "
            f"(a CHUNK frame here needs {overhead + 3} bytes)"
        )
    count = -(-total // size)
    view = memoryview(encoded)
    return [
        encode_frame(
            Chunk(message_id, index, count, bytes(view[index * size : (index + 1) * size])),
            max_frame_size=max(DEFAULT_MAX_FRAME_SIZE, total),
        )
        for index in range(count)
    ]


def batch_messages(encoded: list[bytes], max_message_size: int) -> list[bytes]:
    """Encoded frames (each at most ``max_message_size``) put back to back into as few
    transport messages as fit, in order: a sync of a thousand documents then costs a few
    dozen messages, not thousands (each costs the SCTP stack far more than its bytes)."""
    if len(encoded) < 2:
        return encoded
    messages: list[bytes] = []
    pending: list[bytes] = []
    size = 0
    for frame in encoded:
        if pending and size + len(frame) > max_message_size:
            messages.append(b"".join(pending))
            pending, size = [], 0
        pending.append(frame)
        size += len(frame)
    if pending:
        messages.append(b"".join(pending))
    return messages


class Reassembler:
    """Joins CHUNK frames back into one encoded frame: one frame at a time, in order.

    The link's transport is ordered and reliable, so any gap, reordering or interleaving is
    a protocol error rather than something to wait out; the buffer never exceeds
    ``max_frame_size``.
    """

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()  # one buffer, not a list: no per-chunk object overhead
        self._message_id: int | None = None
        self._count = 0
        self._next_index = 0

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buffer)

    def feed(self, chunk: Chunk) -> bytes | None:
        """Add the next chunk; return the whole encoded frame with the last one, else None.

        Raises :class:`ProtocolError` for a chunk out of order or past ``max_frame_size``;
        the partial frame is dropped (the link closes anyway).
        """
        try:
            return self._feed(chunk)
        except ProtocolError:
            self._reset()
            raise

    def _feed(self, chunk: Chunk) -> bytes | None:
        where = f"chunk {chunk.index}/{chunk.count} of message {chunk.message_id}"
        if self._message_id is None:
            if chunk.index != 0:
                raise ProtocolError(f"{where} arrived with no frame in progress (expected index 0)")
            if chunk.count < 2 or chunk.count > self.max_frame_size:
                raise ProtocolError(f"{where}: count must be in 2..{self.max_frame_size}")
            self._message_id = chunk.message_id
            self._count = chunk.count
        elif chunk.index == 0:
            raise ProtocolError(
                f"{where} starts a new frame while message {self._message_id} is incomplete "
                f"({self._next_index} of {self._count} chunks)"
            )
        elif chunk.message_id != self._message_id:
            raise ProtocolError(f"{where} arrived while message {self._message_id} is in progress")
        elif chunk.count != self._count:
            raise ProtocolError(
                f"{where}: message {self._message_id} started with count {self._count}"
            )
        elif chunk.index != self._next_index:
            raise ProtocolError(f"{where}: expected index {self._next_index}")
        total = len(self._buffer) + len(chunk.data)
        if total > self.max_frame_size:
            raise ProtocolError(
                f"{where}: reassembled frame reaches {total} bytes, above the limit of "
                f"{self.max_frame_size}",
                close_code=CloseCode.TOO_BIG,
            )
        self._buffer += chunk.data
        self._next_index += 1
        if self._next_index < self._count:
            return None
        whole = bytes(self._buffer)
        self._reset()
        return whole

    def _reset(self) -> None:
        self._buffer = bytearray()
        self._message_id = None
        self._count = 0
        self._next_index = 0
