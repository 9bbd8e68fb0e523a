"""What a Yjs v1 update covers: how far its clocks reach, and which deletions it holds.

pycrdt applies, merges and diffs updates but cannot say which clocks an update covers (its
``get_state`` counts only clients whose structs start at clock 0) nor list its deletions.
The replica needs both to tell an update's own content from content pycrdt held back and
released along with it. Layouts follow Yjs ``encoding.js`` (``writeClientsStructs``,
``writeDeleteSet``).
"""

from __future__ import annotations

import pycrdt

from crdtsync.protocol.ymessages import read_state_vector, read_var_uint

__all__ = [
    "EMPTY_UPDATE",
    "MAX_CLOCK",
    "DeleteSet",
    "delete_set_covers",
    "reach",
    "read_delete_set",
    "write_state_vector",
    "write_var_uint",
]

# Yjs encodes "nothing new" as an update with no structs and an empty delete set.
EMPTY_UPDATE = b"\x00\x00"
MAX_CLOCK = 2**32 - 1  # yrs keeps clocks as u32: a state vector at this clock is "everything"

DeleteSet = dict[int, tuple[tuple[int, int], ...]]  # client -> sorted, disjoint (clock, length)


def write_var_uint(value: int) -> bytes:
    """A lib0 varuint: seven bits per byte, low bits first, high bit set on all but the last."""
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def write_state_vector(clocks: dict[int, int]) -> bytes:
    """Encode ``{client id: clock}`` as a Yjs state vector."""
    parts = [write_var_uint(len(clocks))]
    for client, clock in clocks.items():
        parts += (write_var_uint(client), write_var_uint(clock))
    return b"".join(parts)


def _filler(clocks: dict[int, int]) -> bytes:
    """An update of one GC struct per client over clocks [0, clock): merged before another
    update, it joins that update's structs to clock 0 wherever they follow on without a gap."""
    parts = [write_var_uint(len(clocks))]
    for client, clock in clocks.items():
        # 1 struct, client, first clock 0, then the struct: info 0 (GC) and its length.
        parts += (b"\x01", write_var_uint(client), b"\x00\x00", write_var_uint(clock))
    parts.append(b"\x00")  # an empty delete set
    return b"".join(parts)


def reach(update: bytes, clocks: dict[int, int]) -> dict[int, int]:
    """How far each client's clocks run in ``clocks`` extended by ``update``'s structs, as far
    as they follow on without a gap (what a doc at ``clocks`` could integrate from it)."""
    joined = pycrdt.merge_updates(_filler({c: k for c, k in clocks.items() if k}), update)
    return read_state_vector(pycrdt.get_state(joined))


def read_delete_set(update: bytes) -> DeleteSet | None:
    """The deletions of an update that holds no structs (``pycrdt.get_update(update, state)``
    past all of its structs), with touching ranges joined; None if it still holds structs.

    ProtocolError if the bytes are malformed.
    """
    groups, offset = read_var_uint(update, 0)
    if groups:
        return None
    clients, offset = read_var_uint(update, offset)
    deletions: DeleteSet = {}
    for _ in range(clients):
        client, offset = read_var_uint(update, offset)
        count, offset = read_var_uint(update, offset)
        spans = []
        for _ in range(count):
            clock, offset = read_var_uint(update, offset)
            length, offset = read_var_uint(update, offset)
            spans.append((clock, length))
        deletions[client] = _joined(spans + list(deletions.get(client, ())))
    return deletions


def _joined(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Ranges sorted, with overlapping or touching ones joined, so equal sets compare equal."""
    result: list[tuple[int, int]] = []
    for clock, length in sorted(spans):
        if result and clock <= result[-1][0] + result[-1][1]:
            start, previous = result[-1]
            result[-1] = (start, max(previous, clock + length - start))
        elif length:
            result.append((clock, length))
    return tuple(result)


def delete_set_covers(outer: DeleteSet, inner: DeleteSet) -> bool:
    """Whether every range deleted in ``inner`` lies within one of ``outer``'s ranges."""
    for client, spans in inner.items():
        ranges = outer.get(client, ())
        for clock, length in spans:
            if not any(start <= clock and clock + length <= start + size for start, size in ranges):
                return False
    return True
