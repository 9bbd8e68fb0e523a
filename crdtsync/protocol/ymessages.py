"""y-protocols message bytes (what Yjs and y-webrtc send), built and strictly validated.

The sync session (``sync.py``) and the link core (``link.py``) build SYNC and AWARENESS
messages here; ``frames.py`` wraps them, untouched, in our msgpack envelope. Incoming
messages are checked here before their payload reaches pycrdt, whose ``Decoder`` is not
safe on hostile input (IndexError on a truncated varint, silent truncation of a long length).
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

import pycrdt

from crdtsync.errors import LocalProtocolError, ProtocolError

__all__ = [
    "DEFAULT_MAX_AWARENESS_CLIENTS",
    "MAX_VARUINT",
    "MAX_VARUINT_BYTES",
    "MessageType",
    "SyncType",
    "awareness_message",
    "parse_awareness_message",
    "parse_sync_message",
    "read_state_vector",
    "read_var_uint",
    "sync_step1",
    "sync_step2",
    "sync_update",
    "validate_awareness_update",
]


class MessageType(IntEnum):
    """First varuint of a y-protocols message (y-protocols ``sync.js``, ``awareness.js``)."""

    SYNC = 0
    AWARENESS = 1


class SyncType(IntEnum):
    """Second varuint of a SYNC message: which step of the sync it is."""

    STEP1 = 0  # payload: a state vector
    STEP2 = 1  # payload: an update holding what the step-1 sender lacks
    UPDATE = 2  # payload: an incremental update


# lib0 (Yjs's encoding library) decodes varuints into JS numbers and rejects anything above
# Number.MAX_SAFE_INTEGER (2**53 - 1). Seven payload bits per byte, so 53 bits need
# ceil(53 / 7) = 8 bytes: a longer varuint is hostile or corrupt, never something Yjs wrote.
MAX_VARUINT = 2**53 - 1
MAX_VARUINT_BYTES = 8

# A room has a handful of peers, each with a few client ids over its lifetime; 1024 leaves
# ample room while bounding the work one awareness message can cause.
DEFAULT_MAX_AWARENESS_CLIENTS = 1024


def read_var_uint(data: bytes, offset: int) -> tuple[int, int]:
    """Read a lib0 varuint at ``offset``; return ``(value, offset after it)``.

    Raises :class:`ProtocolError` when the bytes end mid-varuint, or the varuint is longer
    than :data:`MAX_VARUINT_BYTES` or above :data:`MAX_VARUINT`.
    """
    if offset < 0:
        raise LocalProtocolError(f"varuint offset must be >= 0 (got {offset})")
    value = 0
    shift = 0
    pos = offset
    end = min(len(data), offset + MAX_VARUINT_BYTES)
    while pos < end:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            if value > MAX_VARUINT:
                raise ProtocolError(
                    f"varuint at offset {offset}: value {value} exceeds 2**53 - 1 ({MAX_VARUINT})"
                )
            return value, pos
        shift += 7
    if pos - offset >= MAX_VARUINT_BYTES:
        raise ProtocolError(f"varuint at offset {offset}: longer than {MAX_VARUINT_BYTES} bytes")
    raise ProtocolError(
        f"varuint at offset {offset}: truncated after {pos - offset} bytes "
        f"(data is {len(data)} bytes)"
    )


def read_state_vector(state_vector: bytes) -> dict[int, int]:
    """Decode a Yjs state vector into ``{client id: clock}``; ProtocolError if malformed."""
    count, offset = read_var_uint(state_vector, 0)
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, offset = read_var_uint(state_vector, offset)
        clocks[client], offset = read_var_uint(state_vector, offset)
    if offset != len(state_vector):
        raise ProtocolError(
            f"state vector: {len(state_vector) - offset} bytes left after {count} entries"
        )
    return clocks


def check_update_header(update: bytes) -> None:
    """ProtocolError if ``update`` claims more client groups than its bytes can hold.

    pycrdt reserves memory for that count before it reads on: 4 bytes claiming 2**28
    groups cost it ~550 MB and half a second. A group takes at least 3 bytes (its struct
    count, client and clock), which bounds the honest count.
    """
    groups, offset = read_var_uint(update, 0)
    if groups * 3 > len(update) - offset:
        raise ProtocolError(
            f"update claims {groups} client groups in {len(update)} bytes (at most "
            f"{(len(update) - offset) // 3} fit)"
        )


def _check_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise LocalProtocolError(f"{what} must be bytes (got {type(value).__name__})")
    return value


def sync_step1(state_vector: bytes) -> bytes:
    """A SYNC step-1 message: our state vector, asking the remote for what we lack."""
    # pycrdt only has the private ``_sync.create_sync_step1_message``; this is its one line.
    payload = _check_bytes(state_vector, "state vector")
    return bytes([MessageType.SYNC, SyncType.STEP1]) + pycrdt.write_message(payload)


def sync_step2(update: bytes) -> bytes:
    """A SYNC step-2 message: the update answering a step 1."""
    # pycrdt only has the private ``_sync.create_sync_step2_message``; this is its one line.
    payload = _check_bytes(update, "update")
    return bytes([MessageType.SYNC, SyncType.STEP2]) + pycrdt.write_message(payload)


def sync_update(update: bytes) -> bytes:
    """A SYNC update message: one incremental document update."""
    return pycrdt.create_update_message(_check_bytes(update, "update"))


def awareness_message(awareness_update: bytes) -> bytes:
    """An AWARENESS message around an awareness update (validated first: caller misuse)."""
    payload = _check_bytes(awareness_update, "awareness update")
    try:
        validate_awareness_update(payload)
    except LocalProtocolError:
        raise
    except ProtocolError as exc:
        raise LocalProtocolError(str(exc)) from exc
    return pycrdt.create_awareness_message(payload)


def _read_payload(message: bytes, offset: int, what: str) -> bytes:
    """Read a varuint length and exactly that many bytes, which must end ``message``."""
    length, offset = read_var_uint(message, offset)
    left = len(message) - offset
    if length > left:
        raise ProtocolError(
            f"{what}: declared payload length {length} exceeds the {left} bytes left"
        )
    if length < left:
        raise ProtocolError(
            f"{what}: {left - length} trailing bytes after the {length}-byte payload"
        )
    return message[offset:]


def parse_sync_message(message: bytes) -> tuple[SyncType, bytes]:
    """Split one whole SYNC message into its type and payload.

    Raises :class:`ProtocolError` unless ``message`` is exactly one well-formed SYNC message.
    """
    if not message:
        raise ProtocolError("sync message: empty")
    kind, offset = read_var_uint(message, 0)
    if kind != MessageType.SYNC:
        raise ProtocolError(f"sync message: message type {kind}, expected {MessageType.SYNC}")
    sync_type, offset = read_var_uint(message, offset)
    try:
        kind_of_sync = SyncType(sync_type)
    except ValueError:
        raise ProtocolError(
            f"sync message: unknown sync type {sync_type} (known: 0, 1, 2)"
        ) from None
    return kind_of_sync, _read_payload(message, offset, "sync message")


def parse_awareness_message(
    message: bytes, *, max_clients: int = DEFAULT_MAX_AWARENESS_CLIENTS
) -> bytes:
    """Return the awareness update inside one whole AWARENESS message, validated.

    Raises :class:`ProtocolError` unless ``message`` is exactly one well-formed AWARENESS
    message whose update passes :func:`validate_awareness_update`.
    """
    if not message:
        raise ProtocolError("awareness message: empty")
    kind, offset = read_var_uint(message, 0)
    if kind != MessageType.AWARENESS:
        raise ProtocolError(
            f"awareness message: message type {kind}, expected {MessageType.AWARENESS}"
        )
    update = _read_payload(message, offset, "awareness message")
    validate_awareness_update(update, max_clients=max_clients)
    return update


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON.parse on the Yjs side does not.
    raise ValueError(f"{name} is not JSON")


def validate_awareness_update(
    update: bytes, *, max_clients: int = DEFAULT_MAX_AWARENESS_CLIENTS
) -> None:
    """Check an awareness update: ``count``, then ``count`` x (client id, clock, JSON state).

    Each state must be JSON text for an object or ``null`` (a client that left), as y-protocols'
    ``awareness.js`` writes it. Raises :class:`ProtocolError` naming the first fault.
    """
    count, offset = read_var_uint(update, 0)
    if count > max_clients:
        raise ProtocolError(f"awareness update: {count} clients exceed the limit of {max_clients}")
    for entry in range(count):
        client_id, offset = read_var_uint(update, offset)
        _clock, offset = read_var_uint(update, offset)
        length, offset = read_var_uint(update, offset)
        left = len(update) - offset
        if length > left:
            raise ProtocolError(
                f"awareness update: client {client_id} declares a {length}-byte state "
                f"but only {left} bytes are left"
            )
        raw = update[offset : offset + length]
        offset += length
        try:
            state = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise ProtocolError(
                f"awareness update: state of client {client_id} (entry {entry}) is not JSON: {exc}"
            ) from exc
        if state is not None and not isinstance(state, dict):
            raise ProtocolError(
                f"awareness update: state of client {client_id} is a JSON "
                f"{type(state).__name__}, expected an object or null"
            )
    if offset != len(update):
        raise ProtocolError(
            f"awareness update: {len(update) - offset} trailing bytes after {count} clients"
        )
