"""The y-webrtc signaling protocol's messages, sans I/O: JSON objects in WebSocket text frames.

A y-webrtc client ``subscribe``s to topics (room names), ``publish``es payloads to a topic
(announce and signal objects, or base64 strings in password rooms) and ``ping``s; the server
relays publishes with ``clients`` (the topic's subscriber count) and answers ``pong``. Both
directions are here: the server decodes what clients send, a Python client what servers send.
Our server adds ``error`` messages for refused requests; y-webrtc clients ignore them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from crdtsync.errors import LocalProtocolError, ProtocolError
from crdtsync.protocol.signaling import MAX_ROOM_LENGTH

__all__ = [
    "MAX_DEPTH",
    "MAX_TOPICS_PER_MESSAGE",
    "Error",
    "Ping",
    "Pong",
    "Publish",
    "Subscribe",
    "TopicMessage",
    "Unsubscribe",
    "decode_topic_message",
    "encode_topic_message",
    "relayed_publish",
]

# A JS process sends one subscribe naming every open room; the server's per-connection room
# limit (16 by default) is far lower, this only bounds the work one message can ask for.
MAX_TOPICS_PER_MESSAGE = 256
# Nesting of a whole message: publish > data > signal > candidate is 4 levels; 32 leaves room
# for any payload y-webrtc sends and stops stack-deep structures.
MAX_DEPTH = 32
_MAX_ERROR_CODE = 64
_MAX_ERROR_MESSAGE = 1024
_SURROGATE = re.compile("[\ud800-\udfff]")
# How a lone surrogate gets into decoded JSON: an escape (UTF-8 text cannot hold one).
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Client: add this connection to each topic (idempotent)."""

    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Client: leave each topic."""

    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Publish:
    """A payload for a topic's subscribers; ``clients`` is set by the server when relaying.

    ``data`` is any JSON value: an object in plaintext rooms, a base64 string in password rooms.
    """

    topic: str
    data: object
    clients: int | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """Client: the server must answer ``pong`` (lib0 reconnects after 30 s of silence)."""


@dataclass(frozen=True, slots=True)
class Pong:
    """Server: the answer to ``ping``."""


@dataclass(frozen=True, slots=True)
class Error:
    """Server (ours only): a request was refused; ``code`` is a stable word."""

    code: str
    message: str


TopicMessage = Subscribe | Unsubscribe | Publish | Ping | Pong | Error


def encode_topic_message(message: TopicMessage) -> str:
    """The text frame of ``message`` (compact JSON); LocalProtocolError if decoding would refuse."""
    body: dict[str, Any]
    if isinstance(message, Subscribe | Unsubscribe):
        kind = "subscribe" if isinstance(message, Subscribe) else "unsubscribe"
        body = {"type": kind, "topics": list(message.topics)}
    elif isinstance(message, Publish):
        body = {"type": "publish", "topic": message.topic, "data": message.data}
        if message.clients is not None:
            body["clients"] = message.clients
    elif isinstance(message, Ping):
        body = {"type": "ping"}
    elif isinstance(message, Pong):
        body = {"type": "pong"}
    else:
        body = {"type": "error", "code": message.code, "message": message.message}
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        _check_depth(body)
        if _SURROGATE.search(text):  # one scan of the text, not one per string
            raise ProtocolError("it holds a lone surrogate (it cannot be sent as UTF-8)")
    except (TypeError, ValueError, ProtocolError) as exc:
        raise LocalProtocolError(f"cannot encode {type(message).__name__}: {exc}") from exc
    return text


def decode_topic_message(data: str | bytes, *, max_size: int) -> TopicMessage:
    """Parse one frame; ProtocolError (nothing else) for anything malformed or too big."""
    if isinstance(data, bytes):
        size = len(data)
    else:
        # A str holds at most 4 UTF-8 bytes per character: measure only when it may be over.
        size = len(data) if len(data) * 4 <= max_size else len(data.encode("utf-8", "replace"))
    if size > max_size:
        raise ProtocolError(f"y-webrtc message of {size} bytes exceeds {max_size}", close_code=1009)
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data  # JSON text is UTF-8
        body = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise ProtocolError(f"y-webrtc message nests deeper than {MAX_DEPTH}") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise ProtocolError(f"y-webrtc message is not JSON: {str(exc)[:100]}") from exc
    if not isinstance(body, dict):
        raise ProtocolError(f"y-webrtc message must be an object, got {type(body).__name__}")
    _check_depth(body)
    if _ESCAPED_SURROGATE.search(text) and _SURROGATE.search(json.dumps(body, ensure_ascii=False)):
        raise ProtocolError("y-webrtc message holds a lone surrogate")
    kind = body.get("type")
    if kind in ("subscribe", "unsubscribe"):
        topics = _topics(body, kind)
        return Subscribe(topics) if kind == "subscribe" else Unsubscribe(topics)
    if kind == "publish":
        if "data" not in body:
            raise ProtocolError("y-webrtc publish: missing field 'data'")
        clients = body.get("clients")
        if clients is not None and (
            isinstance(clients, bool) or not isinstance(clients, int) or clients < 0
        ):
            raise ProtocolError("y-webrtc publish: clients must be an unsigned int")
        return Publish(_text(body, kind, "topic", MAX_ROOM_LENGTH), body["data"], clients)
    if kind == "ping":
        return Ping()
    if kind == "pong":
        return Pong()
    if kind == "error":
        return Error(
            _text(body, kind, "code", _MAX_ERROR_CODE),
            _text(body, kind, "message", _MAX_ERROR_MESSAGE),
        )
    if kind is None:
        raise ProtocolError("y-webrtc message has no type")
    raise ProtocolError(f"unknown y-webrtc message type {str(kind)[:100]!r}")


def relayed_publish(frame: str | bytes, publish: Publish, clients: int) -> str:
    """What a server relays for ``publish``, just decoded from ``frame``: the client's own
    text with ``clients`` added, as y-webrtc's server adds it. The text was parsed and
    checked a moment ago, so splicing beats encoding it all again (a relay's cheapest part
    is then its JSON). Encoded anew when the client named ``clients`` itself."""
    if isinstance(frame, str) and publish.clients is None:
        body = frame.rstrip()
        if body.endswith("}"):  # always, for a JSON object
            return f'{body[:-1]},"clients":{clients:d}}}'
    return encode_topic_message(Publish(publish.topic, publish.data, clients))


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _check_depth(body: object) -> None:
    """Nesting at most MAX_DEPTH: what every peer of ours accepts."""
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if depth > MAX_DEPTH:
            raise ProtocolError(f"y-webrtc message nests deeper than {MAX_DEPTH}")
        stack.extend((item, depth + 1) for item in value if isinstance(item, dict | list))


def _text(body: dict[str, Any], kind: str, name: str, max_length: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise ProtocolError(
            f"y-webrtc {kind}: {name} must be a string of 1 to {max_length} characters"
        )
    return value


def _topics(body: dict[str, Any], kind: str) -> tuple[str, ...]:
    topics = body.get("topics")
    if not isinstance(topics, list):
        raise ProtocolError(f"y-webrtc {kind}: topics must be a list")
    if len(topics) > MAX_TOPICS_PER_MESSAGE:
        raise ProtocolError(
            f"y-webrtc {kind}: {len(topics)} topics, at most {MAX_TOPICS_PER_MESSAGE}"
        )
    if not all(isinstance(t, str) and 0 < len(t) <= MAX_ROOM_LENGTH for t in topics):
        raise ProtocolError(
            f"y-webrtc {kind}: topics must be strings of 1 to {MAX_ROOM_LENGTH} characters"
        )
    return tuple(topics)
