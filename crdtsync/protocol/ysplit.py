"""Split one Yjs v1 update into several smaller v1 updates that integrate to the same state.

y-webrtc sends every update, a newcomer's whole sync step 2 included, as one data-channel
message, and libwebrtc caps those at 262,144 bytes. The y-webrtc link splits larger updates
here before it frames them. Layouts follow Yjs ``encoding.js`` (``writeClientsStructs``,
``writeStructs``, ``writeDeleteSet``), ``Item.write``, ``readItemContent`` and lib0
``writeAny``; a struct too big for one piece is cut the way Yjs ``splitItem`` cuts it.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from dataclasses import dataclass, field

from crdtsync.errors import LocalProtocolError, ProtocolError
from crdtsync.protocol.ymessages import MAX_VARUINT, read_var_uint
from crdtsync.protocol.yupdate import write_var_uint

__all__ = ["MIN_MAX_SIZE", "split_update"]

# The smallest piece that can always carry something: one struct group header (group
# count 1, struct count, client and clock: 1 + 1 + 8 + 8 bytes at most), the header of a
# right part cut from an item (info byte, origin and right origin IDs: 1 + 16 + 16), one
# UTF-16 unit of text with its length (1 + 4), and the empty delete set (1): 57 bytes; or
# a delete-set-only piece with one range (1 + 1 + 8 + 1 + 8 + 8 = 27). Rounded up to 128
# so that small JSON or Any elements fit beside those headers too.
MIN_MAX_SIZE = 128

# Struct kinds: info & 31 (Yjs ``readClientsStructRefs``, ``contentRefs``).
_GC, _DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY, _DOC, _SKIP = range(11)
_KINDS = ("GC", "Deleted", "JSON", "Binary", "String", "Embed", "Format", "Type", "Any", "Doc")
_HAS_ORIGIN, _HAS_RIGHT_ORIGIN, _HAS_PARENT_SUB = 0x80, 0x40, 0x20
# Yjs ``typeRefs``: YXmlElement (3) and YXmlHook (5) carry a name after the type ref.
_TYPE_REFS, _NAMED_TYPE_REFS = range(7), (3, 5)
# lib0 ``writeAny`` tags.
_ANY_FIXED = {127: 0, 126: 0, 124: 4, 123: 8, 122: 8, 121: 0, 120: 0}  # tag -> payload bytes
_ANY_VAR_INT, _ANY_STRING, _ANY_OBJECT, _ANY_ARRAY, _ANY_BYTES = 125, 119, 118, 117, 116
_VAR_INT_BYTES = 8  # lib0 varInt: 6 bits, then 7 per byte; 8 bytes hold 53 bits


def _vlen(value: int) -> int:
    """Bytes of ``write_var_uint(value)``, without building them."""
    return max(1, (value.bit_length() + 6) // 7)


def _utf16_length(text: bytes | memoryview) -> int:
    """Clock length of String content: Yjs counts UTF-16 code units, we hold UTF-8."""
    return len(str(text, "utf-8").encode("utf-16-le")) // 2


@dataclass(frozen=True, slots=True)
class _Struct:
    """One GC, Skip or Item of a client group, as read, ready to re-encode or cut.

    Parts cut from one struct share its bytes (memoryviews) and its element offsets, so
    cutting a big struct into many parts costs time linear in its size.
    """

    clock: int
    length: int
    info: int
    head: bytes  # info byte, IDs and parent info of an item as read; the info byte otherwise
    right: bytes = b""  # the right origin ID as encoded (items only)
    payload: bytes | memoryview = b""  # String: UTF-8; JSON/Any: the elements; else content
    ends: tuple[int, ...] = ()  # JSON/Any: where each element ends, from ``base``
    first: int = 0  # JSON/Any: index in ``ends`` of this part's first element
    base: int = 0  # JSON/Any: offset in ``ends`` terms where ``payload`` starts
    deps: tuple[tuple[int, int], ...] = field(default=(), compare=False)  # IDs it points to

    @property
    def kind(self) -> int:
        return self.info & 0x1F

    def _prefix(self) -> int:
        """The varUint before the payload: a length, a count, or none for opaque content."""
        if self.kind in (_GC, _SKIP, _DELETED, _JSON, _ANY):
            return self.length
        return len(self.payload) if self.kind == _STRING else -1

    @property
    def size(self) -> int:
        prefix = self._prefix()
        return len(self.head) + (_vlen(prefix) if prefix >= 0 else 0) + len(self.payload)

    def encode(self) -> bytes:
        prefix = self._prefix()
        middle = write_var_uint(prefix) if prefix >= 0 else b""
        return b"".join((self.head, middle, self.payload))

    def describe(self, client: int) -> str:
        name = "Skip" if self.kind == _SKIP else _KINDS[self.kind]
        what = "struct" if self.kind in (_GC, _SKIP) else "item"
        return f"{name} {what} (client {client}, clock {self.clock}, {self.size} bytes)"


def _cut(struct: _Struct, room: int, client: int) -> tuple[_Struct, _Struct] | None:
    """Cut ``struct`` so that its left part encodes in ``room`` bytes with as many clock
    units as fit, or None when none fit or its content cannot be cut (Yjs ``splitItem``
    cuts only content with a ``splice``: Deleted, JSON, String, Any; GC by length)."""
    budget = room - len(struct.head)
    kind = struct.kind
    if budget < 1 or struct.length < 2 or kind == _SKIP:
        return None  # a piece can end before a gap as well as inside it: Skips are not cut
    payload = memoryview(struct.payload)
    left_payload = right_payload = payload[:0]
    first, base = struct.first, struct.base
    if kind in (_GC, _DELETED):
        units = min(struct.length - 1, (1 << (7 * min(budget, 8))) - 1)
    elif kind == _STRING:
        cut = min(len(payload) - 1, budget - 1)
        while cut > 0 and _vlen(cut) + cut > budget:
            cut -= 1
        # Cut between UTF-8 characters, so never inside a UTF-16 surrogate pair: an astral
        # character is one 4-byte UTF-8 sequence.
        while cut > 0 and 0x80 <= payload[cut] < 0xC0:
            cut -= 1
        left_payload, right_payload = payload[:cut], payload[cut:]
        units = _utf16_length(left_payload)
    elif kind in (_JSON, _ANY):
        last = first + struct.length - 1  # keep one element for the right part
        units = bisect_right(struct.ends, base + budget - 1, first, last) - first
        while units > 0 and _vlen(units) + struct.ends[first + units - 1] - base > budget:
            units -= 1
        if units:
            end = struct.ends[first + units - 1]
            left_payload, right_payload = payload[: end - base], payload[end - base :]
            first, base = first + units, end
    else:
        return None
    if not units:
        return None
    if kind == _GC:
        right_head = struct.head
    else:
        # Yjs ``Item.write`` with an offset: the origin is the left part's last ID, the
        # right origin stays, the parent info goes (the parentSub bit stays, unread).
        info = _HAS_ORIGIN | (struct.info & (_HAS_RIGHT_ORIGIN | _HAS_PARENT_SUB)) | kind
        origin = write_var_uint(client) + write_var_uint(struct.clock + units - 1)
        right_head = bytes([info]) + origin + struct.right
    left = _Struct(
        struct.clock,
        units,
        struct.info,
        struct.head,
        struct.right,
        left_payload,
        struct.ends,
        struct.first,
        struct.base,
    )
    right = _Struct(
        struct.clock + units,
        struct.length - units,
        right_head[0],
        right_head,
        struct.right,
        right_payload,
        struct.ends,
        first,
        base,
    )
    return left, right


class _Reader:
    """A cursor over an update; every read raises ProtocolError when the bytes run out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uint(self) -> int:
        value, self.pos = read_var_uint(self.data, self.pos)
        return value

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ProtocolError(f"update truncated at offset {self.pos}")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, size: int) -> bytes:
        if size > len(self.data) - self.pos:
            raise ProtocolError(
                f"update truncated at offset {self.pos}: {size} bytes announced, "
                f"{len(self.data) - self.pos} left"
            )
        self.pos += size
        return self.data[self.pos - size : self.pos]

    def string(self) -> bytes:
        """A lib0 varString; yrs refuses one that is not UTF-8, so do we."""
        start = self.pos
        raw = self.take(self.uint())
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"string at offset {start} is not UTF-8: {exc}") from exc
        return raw

    def skip_var_int(self) -> None:
        start = self.pos
        while self.byte() & 0x80:
            if self.pos - start >= _VAR_INT_BYTES:
                raise ProtocolError(f"varInt at offset {start}: longer than 8 bytes")

    def skip_any(self) -> None:
        """Skip one lib0 ``writeAny`` value, iteratively: hostile nesting must not recurse."""
        stack = [[1, 0]]  # [values left, 1 if each value follows a key (an object)]
        while stack:
            frame = stack[-1]
            if not frame[0]:
                stack.pop()
                continue
            frame[0] -= 1
            if frame[1]:
                self.string()
            start = self.pos
            tag = self.byte()
            if tag in _ANY_FIXED:
                self.take(_ANY_FIXED[tag])
            elif tag == _ANY_VAR_INT:
                self.skip_var_int()
            elif tag == _ANY_STRING:
                self.string()
            elif tag == _ANY_BYTES:
                self.take(self.uint())
            elif tag in (_ANY_OBJECT, _ANY_ARRAY):
                stack.append([self.uint(), int(tag == _ANY_OBJECT)])
            else:
                raise ProtocolError(f"Any value at offset {start}: unknown tag {tag}")

    def id(self, deps: list[tuple[int, int]]) -> None:
        client = self.uint()
        deps.append((client, self.uint()))


def _read_struct(reader: _Reader, clock: int) -> _Struct:
    """One struct of a group (Yjs ``readClientsStructRefs``, ``readItemContent``)."""
    start = reader.pos
    info = reader.byte()
    kind = info & 0x1F
    if kind in (_GC, _SKIP):
        length = reader.uint()
        return _check_length(_Struct(clock, length, info, bytes([info])), start)
    if kind > _DOC:
        raise ProtocolError(f"struct at offset {start}: unknown info {info} (kind {kind})")
    deps: list[tuple[int, int]] = []
    right = b""
    if info & _HAS_ORIGIN:
        reader.id(deps)
    if info & _HAS_RIGHT_ORIGIN:
        right_start = reader.pos
        reader.id(deps)
        right = reader.data[right_start : reader.pos]
    if not info & (_HAS_ORIGIN | _HAS_RIGHT_ORIGIN):
        parent = reader.uint()  # Yjs ``readParentInfo``: 1 a root type name, 0 a parent ID
        if parent == 1:
            reader.string()
        elif parent == 0:
            reader.id(deps)
        else:
            raise ProtocolError(f"item at offset {start}: parent info {parent} (expected 0 or 1)")
        if info & _HAS_PARENT_SUB:
            reader.string()
    head = reader.data[start : reader.pos]
    length, content = 1, reader.pos
    ends: list[int] = []
    if kind == _DELETED:
        length = reader.uint()
        content = reader.pos
    elif kind in (_JSON, _ANY):
        length = reader.uint()
        content = reader.pos
        for _ in range(length):
            if kind == _JSON:
                reader.string()
            else:
                reader.skip_any()
            ends.append(reader.pos - content)
    elif kind == _STRING:
        text = reader.string()
        content = reader.pos - len(text)
        length = _utf16_length(text)
    elif kind == _BINARY:
        reader.take(reader.uint())
    elif kind == _EMBED:
        reader.string()
    elif kind == _FORMAT:
        reader.string()
        reader.string()
    elif kind == _TYPE:
        ref = reader.uint()
        if ref not in _TYPE_REFS:
            raise ProtocolError(f"item at offset {start}: unknown type ref {ref}")
        if ref in _NAMED_TYPE_REFS:
            reader.string()
    else:  # _DOC: its guid, then its options as one Any
        reader.string()
        reader.skip_any()
    payload = reader.data[content : reader.pos]
    struct = _Struct(clock, length, info, head, right, payload, tuple(ends), deps=tuple(deps))
    return _check_length(struct, start)


def _check_length(struct: _Struct, offset: int) -> _Struct:
    if struct.length == 0:
        raise ProtocolError(f"struct at offset {offset}: length 0")
    if struct.clock + struct.length > MAX_VARUINT:
        raise ProtocolError(f"struct at offset {offset}: clock runs past {MAX_VARUINT}")
    return struct


_Groups = dict[int, list[_Struct]]  # client -> its structs, in clock order, no gap
_Deletes = list[tuple[int, list[tuple[int, int]]]]  # (client, [(clock, length)]) as read


def _parse(update: bytes) -> tuple[_Groups, _Deletes]:
    """The whole update: struct groups, then the delete set, and nothing after them."""
    reader = _Reader(update)
    groups: _Groups = {}
    for _ in range(reader.uint()):
        count = reader.uint()
        client = reader.uint()
        clock = reader.uint()
        if client in groups:
            # Yjs keeps only the last group of a client (a Map keyed by client).
            raise ProtocolError(f"update holds two struct groups of client {client}")
        structs = groups[client] = []
        for _ in range(count):
            struct = _read_struct(reader, clock)
            structs.append(struct)
            clock += struct.length
    deletes: _Deletes = []
    for _ in range(reader.uint()):
        client = reader.uint()
        ranges = []
        for _ in range(reader.uint()):
            clock = reader.uint()
            ranges.append((clock, reader.uint()))
        deletes.append((client, ranges))
    if reader.pos != len(update):
        raise ProtocolError(f"update: {len(update) - reader.pos} bytes after the delete set")
    return groups, deletes


def _in_order(groups: _Groups) -> list[tuple[int, _Struct]]:
    """Every struct, each after the structs of this update it points to where possible
    (Kahn's algorithm over clients), so most pieces integrate as they arrive instead of
    waiting in Yjs's pending structs (``integrateStructs``). Clock order within a client
    is kept; a dependency cycle (never made by Yjs) is broken by emitting as is."""
    spans = {client: (s[0].clock, s[-1].clock + s[-1].length) for client, s in groups.items() if s}
    done = {client: start for client, (start, _) in spans.items()}  # emitted up to this clock
    cursor = dict.fromkeys(spans, 0)
    waiting: dict[int, list[tuple[int, int]]] = {client: [] for client in spans}  # heaps
    blocked: dict[int, None] = {}  # clients waiting on another one, oldest first
    ready = list(reversed(spans))
    order: list[tuple[int, _Struct]] = []

    def missing(client: int, struct: _Struct) -> tuple[int, int] | None:
        for dep_client, dep_clock in struct.deps:
            if dep_client != client and dep_client in spans:
                start, end = spans[dep_client]
                if start <= dep_clock < end and dep_clock >= done[dep_client]:
                    return dep_client, dep_clock
        return None

    def emit(client: int) -> None:
        struct = groups[client][cursor[client]]
        order.append((client, struct))
        cursor[client] += 1
        done[client] = struct.clock + struct.length
        heap = waiting[client]
        while heap and heap[0][0] < done[client]:
            ready.append(heapq.heappop(heap)[1])

    total = sum(map(len, groups.values()))
    while len(order) < total:
        while ready:
            client = ready.pop()
            blocked.pop(client, None)
            structs = groups[client]
            while cursor[client] < len(structs):
                dep = missing(client, structs[cursor[client]])
                if dep is not None:
                    heapq.heappush(waiting[dep[0]], (dep[1], client))
                    blocked[client] = None
                    break
                emit(client)
        if blocked:
            client = next(iter(blocked))
            blocked.pop(client)
            emit(client)
            ready.append(client)
    return order


@dataclass(slots=True)
class _Group:
    """The structs of one client in the piece being packed."""

    clock: int
    structs: list[bytes]
    ends_in_skip: bool = False  # a trailing Skip is dropped if the piece ends there

    def header(self, client: int) -> int:
        return _vlen(len(self.structs)) + _vlen(client) + _vlen(self.clock)


class _Packer:
    """Fills pieces of at most ``max_size`` bytes with structs, then with delete ranges."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.pieces: list[bytes] = []
        self.groups: dict[int, _Group] = {}
        self.groups_size = 0  # headers and structs of all groups
        self.deletes: dict[int, list[bytes]] = {}
        self.deletes_size = 0  # client ids, range counts and ranges

    def _size(self) -> int:
        deletes = _vlen(len(self.deletes)) + self.deletes_size
        return _vlen(len(self.groups)) + self.groups_size + deletes

    def _struct_room(self, client: int, clock: int) -> int:
        group = self.groups.get(client)
        if group is None:
            growth = _vlen(len(self.groups) + 1) - _vlen(len(self.groups))
            growth += _vlen(1) + _vlen(client) + _vlen(clock)
        else:
            growth = _vlen(len(group.structs) + 1) - _vlen(len(group.structs))
        return self.max_size - self._size() - growth

    def _append(self, client: int, struct: _Struct) -> None:
        group = self.groups.get(client)
        if group is None:
            group = self.groups[client] = _Group(struct.clock, [])
        else:
            self.groups_size -= group.header(client)
        encoded = struct.encode()
        group.structs.append(encoded)
        group.ends_in_skip = struct.kind == _SKIP
        self.groups_size += group.header(client) + len(encoded)

    def add_struct(self, client: int, struct: _Struct) -> None:
        while True:
            if struct.kind == _SKIP and client not in self.groups:
                return  # a group starts at its first real struct, no need to skip to it
            room = self._struct_room(client, struct.clock)
            if struct.size <= room:
                self._append(client, struct)
                return
            parts = _cut(struct, room, client)
            if parts is not None:
                left, struct = parts
                self._append(client, left)
            elif not self.groups:
                raise ProtocolError(
                    f"{struct.describe(client)} cannot be split to fit max_size {self.max_size}"
                )
            self.flush()

    def add_range(self, client: int, clock: int, length: int) -> None:
        encoded = write_var_uint(clock) + write_var_uint(length)
        for _ in range(2):
            ranges = self.deletes.get(client)
            if ranges is None:
                growth = _vlen(len(self.deletes) + 1) - _vlen(len(self.deletes))
                growth += _vlen(client) + _vlen(1)
            else:
                growth = _vlen(len(ranges) + 1) - _vlen(len(ranges))
            if self._size() + growth + len(encoded) <= self.max_size:
                if ranges is None:
                    ranges = self.deletes[client] = []
                    self.deletes_size += _vlen(client) + _vlen(1)
                else:
                    self.deletes_size += _vlen(len(ranges) + 1) - _vlen(len(ranges))
                ranges.append(encoded)
                self.deletes_size += len(encoded)
                return
            self.flush()
        raise LocalProtocolError(f"max_size {self.max_size} cannot hold one delete range")

    def flush(self) -> None:
        """Close the piece being packed (Yjs ``writeClientsStructs``, ``writeDeleteSet``)."""
        if not self.groups and not self.deletes:
            return
        parts = [write_var_uint(len(self.groups))]
        for client, group in self.groups.items():
            structs = group.structs[:-1] if group.ends_in_skip else group.structs
            parts += (write_var_uint(len(structs)), write_var_uint(client))
            parts.append(write_var_uint(group.clock))
            parts += structs
        parts.append(write_var_uint(len(self.deletes)))
        for client, ranges in self.deletes.items():
            parts += (write_var_uint(client), write_var_uint(len(ranges)), *ranges)
        self.pieces.append(b"".join(parts))
        self.groups, self.groups_size = {}, 0
        self.deletes, self.deletes_size = {}, 0


def split_update(update: bytes, max_size: int) -> list[bytes]:
    """Cut a Yjs v1 ``update`` into v1 updates of at most ``max_size`` bytes each.

    Returns ``[update]`` when it fits. Otherwise applying the pieces in order, to a fresh
    doc or to one that already holds part of the content, gives the state ``update``
    gives: struct groups are cut at struct boundaries (a later piece of a client starts
    at the clock where the earlier one ended), a struct too big is cut like Yjs
    ``splitItem`` cuts it, and the delete set comes last, spread over as many pieces as it
    needs. Structs come in an order where each one's dependencies in the update come
    first, where they can.

    The update is validated in full either way: ProtocolError if it is malformed, or if
    a struct cannot be cut small enough (a Binary, Embed, Format, Type or Doc item, which
    Yjs never splits, or one JSON or Any element, or an item's own header with its parent
    name) to fit in ``max_size``; the message names the struct. LocalProtocolError if
    ``max_size`` is below :data:`MIN_MAX_SIZE` (262,144 - 64 leaves room for framing).
    """
    if not isinstance(update, bytes):
        raise LocalProtocolError(f"update must be bytes (got {type(update).__name__})")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < MIN_MAX_SIZE:
        raise LocalProtocolError(f"max_size must be an int >= {MIN_MAX_SIZE} (got {max_size!r})")
    groups, deletes = _parse(update)
    if len(update) <= max_size:
        return [update]
    packer = _Packer(max_size)
    for client, struct in _in_order(groups):
        packer.add_struct(client, struct)
    for client, ranges in deletes:
        for clock, length in ranges:
            packer.add_range(client, clock, length)
    packer.flush()
    return packer.pieces
