"""The link envelope: frames as msgpack ``[kind, doc_id, body]``, encoded and decoded.

The link core (``link.py``) encodes every frame here; ``chunks.py`` fits encoded frames to
transport messages (CHUNKs of big ones, batches of small ones) and joins chunks again.
y-protocols bytes ride inside SYNC and AWARENESS frames untouched, checked by
``ymessages.py``. Bad peer bytes raise only ProtocolError.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeAlias

import msgpack

from crdtsync.errors import LocalProtocolError, ProtocolError
from crdtsync.protocol.ymessages import SyncType, parse_awareness_message, parse_sync_message

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_CAPABILITIES",
    "MAX_CAPABILITY_LENGTH",
    "MAX_DOC_ID_LENGTH",
    "MAX_LINK_IDS",
    "MAX_PEER_ID_LENGTH",
    "PROTOCOL_VERSION",
    "Absent",
    "Awareness",
    "Bye",
    "Chunk",
    "CloseCode",
    "Frame",
    "FrameKind",
    "Hello",
    "Links",
    "Ping",
    "Pong",
    "Relay",
    "Resync",
    "Sync",
    "decode_frame",
    "decode_frames",
    "encode_frame",
]

# 2: a workspace of documents over one link (ABSENT), frames back to back in one transport
# message, updates naming their sources (RELAY, RESYNC). A peer of version 1 is refused at
# HELLO, which travels alone so that it can read the refusal.
PROTOCOL_VERSION = 2


class FrameKind(IntEnum):
    """First element of every frame."""

    HELLO = 0
    SYNC = 1
    AWARENESS = 2
    PING = 3
    PONG = 4
    CHUNK = 5
    BYE = 6
    LINKS = 7
    ABSENT = 8
    RELAY = 9
    RESYNC = 10


class CloseCode(IntEnum):
    """Why a link closed; carried by BYE. WebSocket numbers (RFC 6455 7.4) where one fits."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_VERSION = 1003
    TOO_BIG = 1009
    TIMEOUT = 1011
    DUPLICATE = 4000  # a newer link to the same peer replaced this one
    POLICY = 4001  # e.g. the mesh is over max_conns


# Largest frame once reassembled: a 105k-character document with 260k edits of history
# (the automerge-paper trace) is 223 kB, so 64 MiB leaves room for documents far beyond
# that while bounding what one peer can make us buffer.
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024
# Largest transport message: aiortc advertises 65,536-byte SCTP messages (and its
# RTCDataChannel.send raises ValueError above 262,144), so bigger frames go out as CHUNKs.
DEFAULT_MAX_MESSAGE_SIZE = 65536

# Identifier limits: generous for UUIDs, room names and paths, small enough that a hostile
# HELLO or LINKS cannot make the mesh hold megabytes of ids.
MAX_DOC_ID_LENGTH = 256
MAX_PEER_ID_LENGTH = 128
MAX_CAPABILITIES = 64
MAX_CAPABILITY_LENGTH = 64
MAX_LINK_IDS = 1024  # matches the awareness client limit: far above any room we mesh

_MAX_UINT64 = 2**64 - 1  # msgpack's largest integer
_HELLO_KEYS = frozenset({"v", "id", "caps"})
_DOCUMENT_KINDS = frozenset(
    {FrameKind.SYNC, FrameKind.AWARENESS, FrameKind.ABSENT, FrameKind.RELAY, FrameKind.RESYNC}
)


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame on a link: who we are, which protocol version, which optional features."""

    peer_id: str
    version: int = PROTOCOL_VERSION
    capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Sync:
    """One whole y-protocols SYNC message for one document."""

    doc_id: str
    message: bytes


@dataclass(frozen=True, slots=True)
class Awareness:
    """One whole y-protocols AWARENESS message for one document."""

    doc_id: str
    message: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """Heartbeat; the remote answers with a PONG carrying the same nonce."""

    nonce: int


@dataclass(frozen=True, slots=True)
class Pong:
    """Answer to a PING."""

    nonce: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """Slice ``index`` of ``count`` of an encoded frame too big for one transport message."""

    message_id: int
    index: int
    count: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Bye:
    """Last frame on a link: a :class:`CloseCode` (or another code) and a readable reason."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Links:
    """The sender's currently open links, so the mesh can decide what to relay."""

    peer_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class Absent:
    """The sender does not sync this document with us (lacks it, closed it, or may not share
    it): stop sending for it until its own step 1 says otherwise."""

    doc_id: str


@dataclass(frozen=True, slots=True)
class Relay:
    """A y-protocols update message with the peers whose edits it holds (its sources): each
    source sent it to all its links, which tells relays whom they need not send it to
    (``protocol/relay.py``). A plain SYNC update is one whose sources are not known."""

    doc_id: str
    message: bytes
    sources: frozenset[str]


@dataclass(frozen=True, slots=True)
class Resync:
    """Asks the remote for its step 1 of a document, so that it gets what it lacks from us:
    we may have kept updates from it on a neighbour list that named a link already lost."""

    doc_id: str


Frame: TypeAlias = (
    Hello | Sync | Awareness | Ping | Pong | Chunk | Bye | Links | Absent | Relay | Resync
)

_Error: TypeAlias = type[ProtocolError]


# -- checks shared by encode (LocalProtocolError) and decode (ProtocolError) ---------------------


def _msgpack_type(value: object) -> str:
    names = {list: "array", dict: "map", bytes: "bin", str: "str", bool: "bool", int: "int"}
    name = names.get(type(value), type(value).__name__)
    return f"an array of {len(value)}" if isinstance(value, list) else name


def _uint(value: object, what: str, error: _Error) -> int:
    # bool is an int subclass in Python, but msgpack writes it as true/false: not a number.
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{what} must be an int (got {_msgpack_type(value)})")
    if not 0 <= value <= _MAX_UINT64:
        raise error(f"{what} must be in 0..2**64-1 (got {value})")
    return value


def _str(value: object, what: str, error: _Error, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise error(f"{what} must be a str (got {_msgpack_type(value)})")
    if max_length is not None and len(value) > max_length:
        raise error(f"{what} is {len(value)} chars, above the limit of {max_length}")
    return value


def _bin(value: object, what: str, error: _Error) -> bytes:
    if not isinstance(value, bytes):
        raise error(f"{what} must be bytes (got {_msgpack_type(value)})")
    return value


def _peer_id(value: object, what: str, error: _Error) -> str:
    peer_id = _str(value, what, error, MAX_PEER_ID_LENGTH)
    if not peer_id:
        raise error(f"{what} is empty")
    return peer_id


def _id_set(value: object, what: str, error: _Error, limit: int) -> frozenset[str]:
    if not isinstance(value, frozenset):
        raise error(f"{what} must be a frozenset (got {type(value).__name__})")
    if len(value) > limit:
        raise error(f"{len(value)} {what} exceed the limit of {limit}")
    return value


def _check_version(version: object, error: _Error) -> None:
    if _uint(version, "HELLO version", error) != PROTOCOL_VERSION:
        raise error(
            f"HELLO version {version} is not supported "
            f"(this peer speaks version {PROTOCOL_VERSION})",
            close_code=CloseCode.UNSUPPORTED_VERSION,
        )


def _check_frame(frame: object, error: _Error, max_frame_size: int) -> None:
    """Raise ``error`` unless ``frame`` is one a peer may send; decode and encode share this."""
    if isinstance(frame, Hello):
        _peer_id(frame.peer_id, "HELLO peer id", error)
        _check_version(frame.version, error)
        for cap in _id_set(frame.capabilities, "capabilities", error, MAX_CAPABILITIES):
            if not _str(cap, "capability", error, MAX_CAPABILITY_LENGTH):
                raise error("capability is empty")
    elif isinstance(frame, Sync | Awareness):
        name = "SYNC" if isinstance(frame, Sync) else "AWARENESS"
        _str(frame.doc_id, f"{name} doc_id", error, MAX_DOC_ID_LENGTH)
        message = _bin(frame.message, f"{name} message", error)
        try:
            if isinstance(frame, Sync):
                parse_sync_message(message)
            else:
                parse_awareness_message(message)
        except ProtocolError as exc:
            raise error(f"{name} frame for doc {frame.doc_id!r}: {exc}") from exc
    elif isinstance(frame, Ping | Pong):
        _uint(frame.nonce, f"{type(frame).__name__.upper()} nonce", error)
    elif isinstance(frame, Chunk):
        _uint(frame.message_id, "CHUNK message_id", error)
        index = _uint(frame.index, "CHUNK index", error)
        count = _uint(frame.count, "CHUNK count", error)
        if count < 2:
            raise error(f"CHUNK count {count} is below 2 (a frame that fits is sent whole)")
        # Every chunk carries at least one byte, so a frame needs at most max_frame_size chunks.
        if count > max_frame_size:
            raise error(
                f"CHUNK count {count} exceeds the {max_frame_size} chunks "
                f"a {max_frame_size}-byte frame can need"
            )
        if index >= count:
            raise error(f"CHUNK index {index} is not below its count {count}")
        if not _bin(frame.data, "CHUNK data", error):
            raise error(f"CHUNK {index}/{count} carries no data")
    elif isinstance(frame, Bye):
        _uint(frame.code, "BYE code", error)
        _str(frame.reason, "BYE reason", error)
    elif isinstance(frame, Links):
        for peer_id in _id_set(frame.peer_ids, "link ids", error, MAX_LINK_IDS):
            _peer_id(peer_id, "LINKS peer id", error)
    elif isinstance(frame, Absent):
        _str(frame.doc_id, "ABSENT doc_id", error, MAX_DOC_ID_LENGTH)
    elif isinstance(frame, Relay):
        _str(frame.doc_id, "RELAY doc_id", error, MAX_DOC_ID_LENGTH)
        message = _bin(frame.message, "RELAY message", error)
        try:
            sync_type, _ = parse_sync_message(message)
        except ProtocolError as exc:
            raise error(f"RELAY frame for doc {frame.doc_id!r}: {exc}") from exc
        if sync_type is not SyncType.UPDATE:
            raise error(f"RELAY frame for doc {frame.doc_id!r} carries a {sync_type.name}")
        sources = _id_set(frame.sources, "RELAY sources", error, MAX_LINK_IDS)
        if not sources:
            raise error("RELAY sources are empty (an update of unknown sources is a SYNC)")
        for peer_id in sources:
            _peer_id(peer_id, "RELAY source", error)
    elif isinstance(frame, Resync):
        _str(frame.doc_id, "RESYNC doc_id", error, MAX_DOC_ID_LENGTH)
    else:
        raise error(f"not a frame: {type(frame).__name__}")


# -- encoding ---------------------------------------------------------------------------------


def _to_wire(frame: Frame) -> list[Any]:
    if isinstance(frame, Hello):
        hello = {"v": frame.version, "id": frame.peer_id, "caps": sorted(frame.capabilities)}
        return [FrameKind.HELLO, "", hello]
    if isinstance(frame, Sync | Awareness):
        kind = FrameKind.SYNC if isinstance(frame, Sync) else FrameKind.AWARENESS
        return [kind, frame.doc_id, frame.message]
    if isinstance(frame, Ping | Pong):
        return [FrameKind.PING if isinstance(frame, Ping) else FrameKind.PONG, "", frame.nonce]
    if isinstance(frame, Chunk):
        return [FrameKind.CHUNK, "", [frame.message_id, frame.index, frame.count, frame.data]]
    if isinstance(frame, Bye):
        return [FrameKind.BYE, "", [frame.code, frame.reason]]
    if isinstance(frame, Absent):
        return [FrameKind.ABSENT, frame.doc_id, None]
    if isinstance(frame, Relay):
        return [FrameKind.RELAY, frame.doc_id, [frame.message, sorted(frame.sources)]]
    if isinstance(frame, Resync):
        return [FrameKind.RESYNC, frame.doc_id, None]
    return [FrameKind.LINKS, "", sorted(frame.peer_ids)]


def encode_frame(frame: Frame, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Encode one frame; LocalProtocolError for a frame :func:`decode_frame` would reject."""
    _check_frame(frame, LocalProtocolError, max_frame_size)
    try:
        encoded = msgpack.packb(_to_wire(frame), use_bin_type=True)
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a lone surrogate in a str
        raise LocalProtocolError(f"cannot encode {type(frame).__name__}: {exc}") from exc
    if len(encoded) > max_frame_size:
        raise LocalProtocolError(
            f"{type(frame).__name__} frame is {len(encoded)} bytes, "
            f"above the limit of {max_frame_size}",
            close_code=CloseCode.TOO_BIG,
        )
    return encoded


# -- decoding ---------------------------------------------------------------------------------


def _list(value: object, what: str, length: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        expected = "an array" if length is None else f"an array of {length}"
        raise ProtocolError(f"{what} must be {expected} (got {_msgpack_type(value)})")
    return value


def _unique_strs(value: object, what: str) -> frozenset[str]:
    items = _list(value, what)
    for item in items:
        _str(item, f"each of {what}", ProtocolError)
    # Interned: every link's neighbour list names the same few peers, and keeps them.
    unique = frozenset(sys.intern(item) for item in items)
    if len(unique) != len(items):
        raise ProtocolError(f"{what} lists {len(items) - len(unique)} ids more than once")
    return unique


def _from_wire(kind: FrameKind, body: Any, doc_id: str) -> Frame:
    # Only the shape is checked here; _check_frame then checks every field's type and range.
    if kind is FrameKind.HELLO:
        if not isinstance(body, dict):
            raise ProtocolError(f"HELLO body must be a map (got {_msgpack_type(body)})")
        # The version first: a peer of another version may well send other keys.
        if "v" not in body:
            raise ProtocolError("HELLO body lacks the version 'v'")
        _check_version(body["v"], ProtocolError)
        if body.keys() != _HELLO_KEYS:
            keys = ", ".join(sorted(repr(key) for key in body))
            raise ProtocolError(f"HELLO body has keys {keys}; expected 'caps', 'id', 'v'")
        caps = _unique_strs(body["caps"], "HELLO capabilities")
        return Hello(peer_id=body["id"], version=body["v"], capabilities=caps)
    if kind in (FrameKind.SYNC, FrameKind.AWARENESS):
        return (Sync if kind is FrameKind.SYNC else Awareness)(doc_id, body)
    if kind in (FrameKind.PING, FrameKind.PONG):
        return (Ping if kind is FrameKind.PING else Pong)(body)
    if kind is FrameKind.CHUNK:
        return Chunk(*_list(body, "CHUNK body [message_id, index, count, data]", 4))
    if kind is FrameKind.BYE:
        return Bye(*_list(body, "BYE body [code, reason]", 2))
    if kind is FrameKind.ABSENT:
        if body is not None:
            raise ProtocolError(f"ABSENT body must be nil (got {_msgpack_type(body)})")
        return Absent(doc_id)
    if kind is FrameKind.RELAY:
        message, sources = _list(body, "RELAY body [message, sources]", 2)
        return Relay(doc_id, message, _unique_strs(sources, "RELAY sources"))
    if kind is FrameKind.RESYNC:
        if body is not None:
            raise ProtocolError(f"RESYNC body must be nil (got {_msgpack_type(body)})")
        return Resync(doc_id)
    return Links(_unique_strs(body, "LINKS ids"))


def _check_message(data: object, max_frame_size: int) -> None:
    if not isinstance(data, bytes | bytearray):
        raise ProtocolError(f"frame must be bytes (got {type(data).__name__})")
    if len(data) > max_frame_size:
        raise ProtocolError(
            f"frame is {len(data)} bytes, above the limit of {max_frame_size}",
            close_code=CloseCode.TOO_BIG,
        )


def _unpack_limits(max_frame_size: int) -> dict[str, Any]:
    # Explicit limits so a hostile header cannot make msgpack allocate beyond them; no frame
    # holds an ext type, and the largest legitimate array is a LINKS list.
    return {
        "raw": False,
        "strict_map_key": True,
        "max_bin_len": max_frame_size,
        "max_str_len": max_frame_size,
        "max_array_len": MAX_LINK_IDS,
        "max_map_len": len(_HELLO_KEYS) * 2,
        "max_ext_len": 0,
    }


def decode_frame(data: bytes, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> Frame:
    """Decode one transport message into a frame (a CHUNK still needs ``chunks.Reassembler``).

    Raises :class:`ProtocolError`, and nothing else, for any bytes that are not exactly one
    valid frame; its ``close_code`` is the code to close the link with.
    """
    _check_message(data, max_frame_size)
    try:
        wire = msgpack.unpackb(data, **_unpack_limits(max_frame_size))
    except (msgpack.UnpackException, ValueError, TypeError, RecursionError) as exc:
        # ExtraData, FormatError, StackError, UnicodeDecodeError are ValueErrors.
        raise ProtocolError(f"frame is not one msgpack value: {exc}") from exc
    return _frame_from_wire(wire, max_frame_size)


def decode_frames(data: bytes, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> list[Frame]:
    """Decode one transport message holding one frame or several back to back, in order;
    ProtocolError as :func:`decode_frame`."""
    _check_message(data, max_frame_size)
    unpacker = msgpack.Unpacker(max_buffer_size=len(data), **_unpack_limits(max_frame_size))
    unpacker.feed(data)
    frames = []
    try:
        for wire in unpacker:
            frames.append(_frame_from_wire(wire, max_frame_size))
    except (msgpack.UnpackException, ValueError, TypeError, RecursionError) as exc:
        raise ProtocolError(f"frame is not a msgpack value: {exc!r}") from exc
    if unpacker.tell() != len(data) or not frames:
        left = len(data) - unpacker.tell()
        raise ProtocolError(f"message ends inside a frame ({left} bytes of it)")
    return frames


def _frame_from_wire(wire: object, max_frame_size: int) -> Frame:
    kind_value, doc_id, body = _list(wire, "frame [kind, doc_id, body]", 3)
    try:
        kind = FrameKind(_uint(kind_value, "frame kind", ProtocolError))
    except ValueError:
        known = ", ".join(str(int(kind)) for kind in FrameKind)
        raise ProtocolError(f"unknown frame kind {kind_value} (known: {known})") from None
    if kind in _DOCUMENT_KINDS:
        _str(doc_id, f"{kind.name} doc_id", ProtocolError, MAX_DOC_ID_LENGTH)
    elif doc_id != "":
        raise ProtocolError(f"{kind.name} frame carries doc_id {doc_id!r}; expected ''")
    frame = _from_wire(kind, body, doc_id)
    _check_frame(frame, ProtocolError, max_frame_size)
    return frame
