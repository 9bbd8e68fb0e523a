"""The signaling protocol: how peers find each other through a server, sans I/O.

Messages are msgpack maps with a type ``t``. A client says ``hello`` (protocol version and
its Ed25519 public key), the server sends a ``challenge`` nonce, the client ``prove``s it
holds the key by signing a domain tag, the origin it dialed and the nonce (version 2; version
1 signed the bare nonce, which a hostile server could relay to another), and the server
answers ``welcome`` with the peer id it derives from the key: nobody can speak as someone
else, and a peer keeps its id across reconnects and server restarts. The client then joins rooms,
and sends ``signal`` payloads (SDP offers, answers, ICE candidates, opaque to the server)
to one peer of a room it is in. The server never sees document data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from crdtsync.errors import LocalProtocolError, ProtocolError

__all__ = [
    "MAX_ROOM_LENGTH",
    "SIGNALING_VERSION",
    "Challenge",
    "Error",
    "Hello",
    "Join",
    "Joined",
    "Leave",
    "PeerJoined",
    "PeerLeft",
    "Ping",
    "Pong",
    "Prove",
    "Signal",
    "SignalingMessage",
    "TurnCredentials",
    "Welcome",
    "decode_signaling",
    "encode_signaling",
]

# 2: a proof signs identity.proof_message(origin, nonce), no longer the bare nonce.
SIGNALING_VERSION = 2
MAX_ROOM_LENGTH = 256
_MAX_ID_LENGTH = 128
_MAX_TOKEN_LENGTH = 512
MAX_TURN_URLS = 8  # a deployment lists a few (UDP, TCP, TLS); aiortc uses one
_MAX_TURN_FIELD = 512


@dataclass(frozen=True, slots=True)
class Hello:
    """Client's first message: the protocol version it speaks, and its public key."""

    public_key: bytes
    version: int = SIGNALING_VERSION


@dataclass(frozen=True, slots=True)
class Challenge:
    """Server: sign this nonce with the key you named."""

    nonce: bytes


@dataclass(frozen=True, slots=True)
class Prove:
    """Client: the signature of ``identity.proof_message(origin, nonce)``."""

    signature: bytes


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    """Time-limited TURN credentials the server hands a proven peer (``signaling/turn.py``)."""

    urls: tuple[str, ...]
    username: str
    credential: str = field(repr=False)  # a password: kept out of logs


@dataclass(frozen=True, slots=True)
class Welcome:
    """Server's answer to hello: the id this connection speaks as, in every room, and TURN
    credentials when the server issues them (an optional field: older peers ignore it)."""

    peer_id: str
    version: int = SIGNALING_VERSION
    turn: TurnCredentials | None = None


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Joined:
    """Server: you are in ``room``, with these other peers."""

    room: str
    peers: frozenset[str]


@dataclass(frozen=True, slots=True)
class Leave:
    room: str


@dataclass(frozen=True, slots=True)
class PeerJoined:
    room: str
    peer_id: str


@dataclass(frozen=True, slots=True)
class PeerLeft:
    room: str
    peer_id: str


@dataclass(frozen=True, slots=True)
class Signal:
    """A payload for one peer: ``peer_id`` is the target when sent, the source when received."""

    room: str
    peer_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: int


@dataclass(frozen=True, slots=True)
class Pong:
    nonce: int


@dataclass(frozen=True, slots=True)
class Error:
    """Server: a request was refused; ``code`` is a stable word, ``message`` says why."""

    code: str
    message: str


SignalingMessage = (
    Hello
    | Challenge
    | Prove
    | Welcome
    | Join
    | Joined
    | Leave
    | PeerJoined
    | PeerLeft
    | Signal
    | Ping
    | Pong
    | Error
)

_TYPES: dict[type[Any], str] = {
    Hello: "hello",
    Challenge: "challenge",
    Prove: "prove",
    Welcome: "welcome",
    Join: "join",
    Joined: "joined",
    Leave: "leave",
    PeerJoined: "peer-joined",
    PeerLeft: "peer-left",
    Signal: "signal",
    Ping: "ping",
    Pong: "pong",
    Error: "error",
}


def encode_signaling(message: SignalingMessage) -> bytes:
    """The wire bytes of ``message``; LocalProtocolError for what decoding would refuse."""
    body: dict[str, Any] = {"t": _TYPES[type(message)]}
    if isinstance(message, Hello):
        body.update(v=message.version, key=message.public_key)
    elif isinstance(message, Challenge):
        body["nonce"] = message.nonce
    elif isinstance(message, Prove):
        body["sig"] = message.signature
    elif isinstance(message, Welcome):
        body.update(v=message.version, id=message.peer_id)
        if message.turn is not None:
            turn = message.turn
            body["turn"] = {"urls": list(turn.urls), "user": turn.username, "cred": turn.credential}
    elif isinstance(message, Join):
        body["room"] = message.room
        if message.token is not None:
            body["token"] = message.token
    elif isinstance(message, Joined):
        body.update(room=message.room, peers=sorted(message.peers))
    elif isinstance(message, Leave):
        body["room"] = message.room
    elif isinstance(message, PeerJoined | PeerLeft):
        body.update(room=message.room, id=message.peer_id)
    elif isinstance(message, Signal):
        body.update(room=message.room, id=message.peer_id, data=message.data)
    elif isinstance(message, Ping | Pong):
        body["n"] = message.nonce
    else:
        body.update(code=message.code, message=message.message)
    encoded = msgpack.packb(body, use_bin_type=True)
    try:
        decode_signaling(encoded, max_size=len(encoded))
    except ProtocolError as exc:
        raise LocalProtocolError(f"cannot encode {message!r}: {exc}") from exc
    return encoded


def decode_signaling(data: bytes, *, max_size: int) -> SignalingMessage:
    """Parse one message; ProtocolError (nothing else) for anything malformed or too big."""
    if len(data) > max_size:
        raise ProtocolError(
            f"signaling message of {len(data)} bytes exceeds {max_size}", close_code=1009
        )
    try:
        body = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=max_size,
            max_str_len=max_size,
            max_array_len=1024,
            max_map_len=16,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many types on hostile input
        raise ProtocolError(f"signaling message is not valid msgpack: {exc!r}") from exc
    if not isinstance(body, dict):
        raise ProtocolError(f"signaling message must be a map, got {type(body).__name__}")
    kind = body.get("t")
    fields = _Fields(body, kind)
    if kind == "hello":
        return Hello(fields.binary("key", 32), fields.uint("v"))
    if kind == "challenge":
        return Challenge(fields.binary("nonce", 32))
    if kind == "prove":
        return Prove(fields.binary("sig", 64))
    if kind == "welcome":
        turn = None if body.get("turn") is None else _turn_credentials(body["turn"])
        return Welcome(fields.ident("id"), fields.uint("v"), turn)
    if kind == "join":
        token = body.get("token")
        if token is not None:
            token = fields.text("token", _MAX_TOKEN_LENGTH)
        return Join(fields.room(), token)
    if kind == "joined":
        return Joined(fields.room(), fields.idents("peers"))
    if kind == "leave":
        return Leave(fields.room())
    if kind == "peer-joined":
        return PeerJoined(fields.room(), fields.ident("id"))
    if kind == "peer-left":
        return PeerLeft(fields.room(), fields.ident("id"))
    if kind == "signal":
        return Signal(fields.room(), fields.ident("id"), fields.binary("data"))
    if kind == "ping":
        return Ping(fields.uint("n"))
    if kind == "pong":
        return Pong(fields.uint("n"))
    if kind == "error":
        return Error(fields.text("code", 64), fields.text("message", 1024))
    raise ProtocolError(f"unknown signaling message type {kind!r}")


def _turn_credentials(value: object) -> TurnCredentials:
    if not isinstance(value, dict):
        raise ProtocolError("signaling welcome: turn must be a map")
    fields = _Fields(value, "welcome turn")
    return TurnCredentials(
        fields.texts("urls", MAX_TURN_URLS, _MAX_TURN_FIELD),
        fields.text("user", _MAX_TURN_FIELD),
        fields.text("cred", _MAX_TURN_FIELD),
    )


class _Fields:
    """Typed access to a message's fields, each error naming the message type and field."""

    def __init__(self, body: dict[str, Any], kind: object) -> None:
        self.body = body
        self.kind = kind

    def _get(self, name: str) -> object:
        if name not in self.body:
            raise ProtocolError(f"signaling {self.kind}: missing field {name!r}")
        return self.body[name]

    def uint(self, name: str) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ProtocolError(
                f"signaling {self.kind}: {name} must be an unsigned int, got {value!r}"
            )
        return value

    def text(self, name: str, max_length: int) -> str:
        value = self._get(name)
        if not isinstance(value, str) or not value or len(value) > max_length:
            raise ProtocolError(
                f"signaling {self.kind}: {name} must be a string of 1 to {max_length} characters"
            )
        return value

    def texts(self, name: str, max_count: int, max_length: int) -> tuple[str, ...]:
        value = self._get(name)
        if not (
            isinstance(value, list)
            and 0 < len(value) <= max_count
            and all(isinstance(item, str) and 0 < len(item) <= max_length for item in value)
        ):
            raise ProtocolError(
                f"signaling {self.kind}: {name} must be a list of 1 to {max_count} strings"
            )
        return tuple(value)

    def ident(self, name: str) -> str:
        return self.text(name, _MAX_ID_LENGTH)

    def room(self) -> str:
        return self.text("room", MAX_ROOM_LENGTH)

    def idents(self, name: str) -> frozenset[str]:
        value = self._get(name)
        if not isinstance(value, list) or not all(
            isinstance(item, str) and 0 < len(item) <= _MAX_ID_LENGTH for item in value
        ):
            raise ProtocolError(f"signaling {self.kind}: {name} must be a list of peer ids")
        return frozenset(value)

    def binary(self, name: str, length: int | None = None) -> bytes:
        value = self._get(name)
        if not isinstance(value, bytes) or (length is not None and len(value) != length):
            size = "" if length is None else f" of {length} bytes"
            raise ProtocolError(f"signaling {self.kind}: {name} must be binary{size}")
        return value
