"""lib0 binary encoding: the pieces y-webrtc puts on the wire besides y-protocols messages.

y-webrtc's password rooms (``ywebrtc_crypto.py``) encrypt signaling objects written with lib0
``encoding.writeAny`` and frame the ciphertext with ``writeVarString``/``writeVarUint8Array``.
Bytes match lib0 0.2.120; decoding is strict and bounded, since the bytes come from peers.
varuints are ``yupdate.write_var_uint`` and ``ymessages.read_var_uint``.
"""

from __future__ import annotations

import math
import struct
from typing import Final, TypeAlias

from crdtsync.errors import LocalProtocolError, ProtocolError
from crdtsync.protocol.ymessages import read_var_uint
from crdtsync.protocol.yupdate import write_var_uint

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MAX_VAR_INT",
    "MAX_VAR_INT_BYTES",
    "UNDEFINED",
    "Lib0Value",
    "Undefined",
    "read_any",
    "read_var_int",
    "read_var_string",
    "read_var_uint8_array",
    "write_any",
    "write_var_int",
    "write_var_string",
    "write_var_uint8_array",
]

# lib0 ``decoding.readVarInt`` builds a JS number and refuses magnitudes above
# Number.MAX_SAFE_INTEGER; 6 bits in the first byte and 7 in each later one make 53 bits fit in
# 1 + ceil(47 / 7) = 8 bytes, so a longer varInt is never something lib0 wrote.
MAX_VAR_INT = 2**53 - 1
MAX_VAR_INT_BYTES = 8

# y-webrtc's signaling objects nest 3 deep (signal -> signal -> sdp). lib0 itself has no cap
# (only the JS stack); 100 leaves room for application values and keeps the recursive decoder
# far below Python's default recursion limit of 1000.
DEFAULT_MAX_DEPTH = 100

# writeAny's integer range: ``Math.abs(n) <= binary.BITS31`` goes as a varInt.
_BITS31 = 2**31 - 1
# JS numbers hold every integer up to 2**53 exactly; a Python int beyond that is not a number
# lib0 could have written, so it goes as a bigint64 (what lib0 writes for a JS BigInt).
_MAX_EXACT_FLOAT_INT = 2**53
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# writeAny type tags (lib0 ``encoding.writeAny``), counting down from 127.
_UNDEFINED: Final = 127
_NULL: Final = 126
_INTEGER: Final = 125
_FLOAT32: Final = 124
_FLOAT64: Final = 123
_BIGINT: Final = 122
_FALSE: Final = 121
_TRUE: Final = 120
_STRING: Final = 119
_OBJECT: Final = 118
_ARRAY: Final = 117
_BYTES: Final = 116

# V8's DataView writes the canonical quiet NaN; Python would keep any payload a NaN carries.
_NAN64: Final = b"\x7f\xf8\x00\x00\x00\x00\x00\x00"


class Undefined:
    """JS ``undefined`` (writeAny tag 127), kept apart from ``None`` (JS ``null``, tag 126).

    lib0 distinguishes the two, and so do we: mapping both to ``None`` would turn a peer's
    ``undefined`` into ``null`` when we write the value back. There is one instance,
    :data:`UNDEFINED`; it is falsy, like ``undefined`` in JS.
    """

    __slots__ = ()
    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = Undefined()

# What read_any returns. write_any also takes tuples (as arrays) and bytearray/memoryview (as
# Uint8Array).
Lib0Value: TypeAlias = (
    Undefined | bool | int | float | str | bytes | list["Lib0Value"] | dict[str, "Lib0Value"] | None
)


# --- varInt ------------------------------------------------------------------------------


def _var_int(magnitude: int, negative: bool) -> bytes:
    """lib0 ``writeVarInt``: continue bit 0x80, sign bit 0x40 and the low 6 bits first."""
    out = bytearray()
    out.append((0x80 if magnitude > 0x3F else 0) | (0x40 if negative else 0) | (magnitude & 0x3F))
    magnitude >>= 6
    while magnitude > 0:
        out.append((0x80 if magnitude > 0x7F else 0) | (magnitude & 0x7F))
        magnitude >>= 7
    return bytes(out)


def write_var_int(value: int) -> bytes:
    """A lib0 varInt (``encoding.writeVarInt``); LocalProtocolError beyond ±(2**53 - 1)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalProtocolError(f"varInt must be an int (got {type(value).__name__})")
    if abs(value) > MAX_VAR_INT:
        raise LocalProtocolError(f"varInt {value} is beyond ±(2**53 - 1) ({MAX_VAR_INT})")
    return _var_int(abs(value), value < 0)


def _read_var_int(data: bytes, offset: int) -> tuple[int, bool, int]:
    """``(magnitude, sign bit, offset after)``; the sign bit matters for lib0's -0."""
    if offset < 0:
        raise LocalProtocolError(f"varInt offset must be >= 0 (got {offset})")
    if offset >= len(data):
        raise ProtocolError(f"varInt at offset {offset}: no bytes left (data is {len(data)} bytes)")
    first = data[offset]
    magnitude = first & 0x3F
    negative = bool(first & 0x40)
    pos = offset + 1
    if first & 0x80:
        shift = 6
        end = min(len(data), offset + MAX_VAR_INT_BYTES)
        while True:
            if pos >= end:
                if pos - offset >= MAX_VAR_INT_BYTES:
                    raise ProtocolError(
                        f"varInt at offset {offset}: longer than {MAX_VAR_INT_BYTES} bytes"
                    )
                raise ProtocolError(
                    f"varInt at offset {offset}: truncated after {pos - offset} bytes "
                    f"(data is {len(data)} bytes)"
                )
            byte = data[pos]
            pos += 1
            magnitude |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
    if magnitude > MAX_VAR_INT:
        raise ProtocolError(
            f"varInt at offset {offset}: magnitude {magnitude} exceeds 2**53 - 1 ({MAX_VAR_INT})"
        )
    return magnitude, negative, pos


def read_var_int(data: bytes, offset: int) -> tuple[int, int]:
    """Read a lib0 varInt (``decoding.readVarInt``); return ``(value, offset after it)``.

    ProtocolError when truncated, longer than :data:`MAX_VAR_INT_BYTES` or beyond
    ±(2**53 - 1). lib0 reads a sign bit on zero as -0; an int has no -0, so this returns 0
    (``read_any`` keeps it as ``-0.0``).
    """
    magnitude, negative, pos = _read_var_int(data, offset)
    return (-magnitude if negative else magnitude), pos


# --- varString, varUint8Array ------------------------------------------------------------


def _encode_utf8(text: str) -> bytes:
    """UTF-8 as lib0 ``string.encodeUtf8`` (TextEncoder) writes it.

    A JS string is UTF-16 code units: TextEncoder joins a surrogate pair into one code point
    and writes U+FFFD for a lone surrogate. A Python str can hold surrogates (surrogateescape),
    so do the same instead of failing.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        units = text.encode("utf-16-le", "surrogatepass")
        return units.decode("utf-16-le", "replace").encode("utf-8")


def write_var_uint8_array(value: bytes) -> bytes:
    """lib0 ``writeVarUint8Array``: varUint(length) then the bytes."""
    return write_var_uint(len(value)) + bytes(value)


def write_var_string(value: str) -> bytes:
    """lib0 ``writeVarString``: a varUint8Array of the UTF-8 bytes."""
    if not isinstance(value, str):
        raise LocalProtocolError(f"varString must be a str (got {type(value).__name__})")
    return write_var_uint8_array(_encode_utf8(value))


def read_var_uint8_array(data: bytes, offset: int) -> tuple[bytes, int]:
    """Read a lib0 varUint8Array; return ``(bytes, offset after it)``.

    ProtocolError when the length claims more bytes than are left (lib0 ``readUint8Array``
    would silently return a short view).
    """
    length, pos = read_var_uint(data, offset)
    left = len(data) - pos
    if length > left:
        raise ProtocolError(
            f"varUint8Array at offset {offset}: length {length} but only {left} bytes left"
        )
    return bytes(data[pos : pos + length]), pos + length


def read_var_string(data: bytes, offset: int) -> tuple[str, int]:
    """Read a lib0 varString; return ``(str, offset after it)``.

    Invalid UTF-8 is a ProtocolError, as lib0's fatal ``TextDecoder`` rejects it; a leading
    BOM is kept (lib0 sets ``ignoreBOM``), as Python's ``utf-8`` codec does.
    """
    raw, pos = read_var_uint8_array(data, offset)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"varString at offset {offset}: invalid UTF-8 ({exc.reason})") from exc


# --- writeAny ----------------------------------------------------------------------------


def _write_float(value: float, out: list[bytes]) -> None:
    """writeAny's number branch: varInt if integral within 31 bits, else float32 if exact."""
    if value.is_integer() and abs(value) <= _BITS31:
        # JS ``Number.isInteger(-0)`` holds, and writeVarInt marks -0 with the sign bit.
        out += (bytes((_INTEGER,)), _var_int(int(abs(value)), math.copysign(1.0, value) < 0))
        return
    if math.isnan(value):
        out += (bytes((_FLOAT64,)), _NAN64)
        return
    try:
        packed = struct.pack(">f", value)
    except OverflowError:  # beyond float32's range: lib0's ``isFloat32`` sees Infinity
        packed = b""
    if packed and struct.unpack(">f", packed)[0] == value:
        out += (bytes((_FLOAT32,)), packed)
    else:
        out += (bytes((_FLOAT64,)), struct.pack(">d", value))


def _is_array_index(key: str) -> bool:
    """Whether JS treats ``key`` as an array index (canonical decimal below 2**32 - 1)."""
    return (
        0 < len(key) <= 10
        and key.isascii()
        and key.isdigit()
        and (key == "0" or key[0] != "0")
        and int(key) < 2**32 - 1
    )


def _js_key_order(keys: list[str]) -> list[str]:
    """Keys in JS ``Object.keys`` order: array indices ascending, then the rest as inserted.

    A JS object cannot hold "10" before "2", so lib0 writes ``{"b": 1, "2": 2}`` as "2", "b".
    """
    indices = [key for key in keys if _is_array_index(key)]
    if not indices:
        return keys
    indices.sort(key=int)
    return indices + [key for key in keys if not _is_array_index(key)]


def _write_any(value: object, out: list[bytes], depth: int, max_depth: int) -> None:
    if value is None:
        out.append(bytes((_NULL,)))
    elif value is UNDEFINED:
        out.append(bytes((_UNDEFINED,)))
    elif isinstance(value, bool):  # before int: bool is an int in Python
        out.append(bytes((_TRUE if value else _FALSE,)))
    elif isinstance(value, int):
        if abs(value) <= _BITS31:
            out += (bytes((_INTEGER,)), write_var_int(value))
        elif abs(value) <= _MAX_EXACT_FLOAT_INT:
            _write_float(float(value), out)  # a JS number: float32 when exact (2**31 is)
        elif _INT64_MIN <= value <= _INT64_MAX:
            out += (bytes((_BIGINT,)), struct.pack(">q", value))
        else:
            raise LocalProtocolError(f"writeAny: int {value} does not fit a signed 64-bit bigint")
    elif isinstance(value, float):
        _write_float(value, out)
    elif isinstance(value, str):
        out += (bytes((_STRING,)), write_var_string(value))
    elif isinstance(value, bytes | bytearray | memoryview):
        out += (bytes((_BYTES,)), write_var_uint8_array(bytes(value)))
    elif isinstance(value, list | tuple | dict):
        if depth >= max_depth:
            raise LocalProtocolError(
                f"writeAny: nesting deeper than {max_depth} levels (or a cycle)"
            )
        if isinstance(value, dict):
            keys = list(value)
            for key in keys:
                if not isinstance(key, str):
                    raise LocalProtocolError(
                        f"writeAny: object keys must be str (got {type(key).__name__})"
                    )
            out += (bytes((_OBJECT,)), write_var_uint(len(keys)))
            for key in _js_key_order(keys):
                out.append(write_var_string(key))
                _write_any(value[key], out, depth + 1, max_depth)
        else:
            out += (bytes((_ARRAY,)), write_var_uint(len(value)))
            for item in value:
                _write_any(item, out, depth + 1, max_depth)
    else:
        raise LocalProtocolError(f"writeAny cannot encode a {type(value).__name__}")


def write_any(value: object, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Encode ``value`` as lib0 ``encoding.writeAny`` does for the matching JS value.

    None -> null, :data:`UNDEFINED` -> undefined, bool, int, float, str, bytes-like ->
    Uint8Array, list/tuple -> array, dict with str keys -> object (keys in JS order). Numbers
    follow JS: integral within 31 bits -> varInt (3.0 included), else float32 if exact, else
    float64; an int beyond 2**53 -> bigint64. LocalProtocolError for anything else, or for
    nesting deeper than ``max_depth`` (which also stops cycles).
    """
    out: list[bytes] = []
    _write_any(value, out, 0, max_depth)
    return b"".join(out)


# --- readAny -----------------------------------------------------------------------------


def _need(data: bytes, offset: int, count: int, what: str) -> None:
    left = len(data) - offset
    if count > left:
        raise ProtocolError(f"{what} at offset {offset}: needs {count} bytes, {left} left")


def _read_any(data: bytes, offset: int, depth: int, max_depth: int) -> tuple[Lib0Value, int]:
    if offset >= len(data):
        raise ProtocolError(
            f"readAny at offset {offset}: no bytes left (data is {len(data)} bytes)"
        )
    tag = data[offset]
    pos = offset + 1
    if tag == _UNDEFINED:
        return UNDEFINED, pos
    if tag == _NULL:
        return None, pos
    if tag == _INTEGER:
        magnitude, negative, pos = _read_var_int(data, pos)
        if negative and magnitude == 0:
            return -0.0, pos  # lib0 reads this as -0, and writes -0 this way
        return (-magnitude if negative else magnitude), pos
    if tag == _FLOAT32:
        _need(data, pos, 4, "float32")
        return struct.unpack_from(">f", data, pos)[0], pos + 4
    if tag == _FLOAT64:
        _need(data, pos, 8, "float64")
        return struct.unpack_from(">d", data, pos)[0], pos + 8
    if tag == _BIGINT:
        _need(data, pos, 8, "bigint64")
        return struct.unpack_from(">q", data, pos)[0], pos + 8
    if tag == _FALSE:
        return False, pos
    if tag == _TRUE:
        return True, pos
    if tag == _STRING:
        return read_var_string(data, pos)
    if tag == _BYTES:
        return read_var_uint8_array(data, pos)
    if tag in (_OBJECT, _ARRAY):
        if depth >= max_depth:
            raise ProtocolError(f"readAny at offset {offset}: nesting deeper than {max_depth}")
        count, pos = read_var_uint(data, pos)
        # Each array item takes at least its tag byte; each object entry a key length and a tag.
        # So a count the rest of the data cannot hold is refused before any work.
        least = count if tag == _ARRAY else 2 * count
        if least > len(data) - pos:
            kind = "array" if tag == _ARRAY else "object"
            raise ProtocolError(
                f"readAny at offset {offset}: {kind} of {count} entries in {len(data) - pos} bytes"
            )
        if tag == _ARRAY:
            items: list[Lib0Value] = []
            for _ in range(count):
                item, pos = _read_any(data, pos, depth + 1, max_depth)
                items.append(item)
            return items, pos
        entries: dict[str, Lib0Value] = {}
        for _ in range(count):
            key, pos = read_var_string(data, pos)
            # A repeated key overwrites in place, as ``obj[key] = ...`` does in lib0.
            entries[key], pos = _read_any(data, pos, depth + 1, max_depth)
        return entries, pos
    raise ProtocolError(f"readAny at offset {offset}: unknown type tag {tag}")


def read_any(
    data: bytes, offset: int = 0, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[Lib0Value, int]:
    """Decode one lib0 ``decoding.readAny`` value at ``offset``; return ``(value, offset after)``.

    Tags map back as :func:`write_any` writes them: varInt -> int (``-0.0`` for lib0's -0),
    float32/float64 -> float, bigint64 -> int, Uint8Array -> bytes, undefined ->
    :data:`UNDEFINED`. ProtocolError on an unknown tag, truncation, a length or count the
    data cannot hold, invalid UTF-8, or nesting deeper than ``max_depth``; work is linear in
    ``len(data)``. Trailing bytes are the caller's to check.
    """
    if offset < 0:
        raise LocalProtocolError(f"readAny offset must be >= 0 (got {offset})")
    return _read_any(data, offset, 0, max_depth)
