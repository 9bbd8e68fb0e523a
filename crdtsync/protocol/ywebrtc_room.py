"""One peer's side of a y-webrtc room's signaling, sans I/O: announces, offers, glare.

y-webrtc peers find each other by publishing to the room's topic (y-webrtc
``SignalingConn``): ``announce`` says "I am here", and whoever hears it and has room for
one more connection offers to the newcomer; ``signal`` carries simple-peer's offer, answer
and trickled candidates to one peer id. Two peers that offer each other at once (glare)
keep the offer whose glare token is larger, as y-webrtc does. This core reads decoded
payloads (plaintext, or opened with the room password) and says what to do; the connector
(``transport/ywebrtc.py``) owns the peer connections.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AcceptOffer",
    "Dial",
    "DropOffer",
    "RemoteAnswer",
    "RemoteCandidate",
    "RoomAction",
    "YWebrtcRoom",
    "parse_candidate",
]

logger = logging.getLogger(__name__)

_MAX_ID_LENGTH = 128  # y-webrtc ids are UUIDs (36 characters)
_MAX_SDP_LENGTH = 64 * 1024  # the server's frame limit bounds it anyway


@dataclass(frozen=True, slots=True)
class Dial:
    """Open a connection to ``remote`` as the initiator (we send the offer)."""

    remote: str


@dataclass(frozen=True, slots=True)
class AcceptOffer:
    """Answer ``remote``'s offer; any dial of ours to it is given up (it lost the glare)."""

    remote: str
    sdp: str


@dataclass(frozen=True, slots=True)
class DropOffer:
    """``remote``'s offer lost the glare to ours: ignore it, ours stands."""

    remote: str


@dataclass(frozen=True, slots=True)
class RemoteAnswer:
    remote: str
    sdp: str


@dataclass(frozen=True, slots=True)
class RemoteCandidate:
    """A trickled ICE candidate: the ``candidate:...`` line and where it belongs."""

    remote: str
    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


RoomAction = Dial | AcceptOffer | DropOffer | RemoteAnswer | RemoteCandidate


@dataclass(slots=True)
class _Connection:
    initiator: bool
    token: float | None = None  # glare token of the first signal we sent, until answered


class YWebrtcRoom:
    """Signaling state of one room for one peer: feed payloads, publish what it returns."""

    def __init__(self, peer_id: str, *, max_conns: int, rng: random.Random | None = None) -> None:
        self.peer_id = peer_id
        self.max_conns = max_conns
        self._rng = rng or random.Random()
        self._connections: dict[str, _Connection] = {}
        self.ignored = 0  # payloads that were not for us or not understood

    @property
    def connections(self) -> frozenset[str]:
        """Remote peers we have a connection with (opening or open)."""
        return frozenset(self._connections)

    # -- what to publish ------------------------------------------------------------------------

    def announce(self) -> dict[str, Any] | None:
        """The announce to publish on (re)connect, or None while the room is full."""
        if len(self._connections) >= self.max_conns:
            return None
        return {"type": "announce", "from": self.peer_id}

    def signal(self, remote: str, signal: dict[str, Any], now_ms: float) -> dict[str, Any]:
        """A ``signal`` payload for ``remote``, with the connection's glare token."""
        connection = self._connections.get(remote)
        if connection is None:
            connection = self._connections[remote] = _Connection(initiator=False)
        if connection.token is None:
            # y-webrtc draws Date.now() + Math.random(): milliseconds, a float.
            connection.token = now_ms + self._rng.random()
        return {
            "type": "signal",
            "from": self.peer_id,
            "to": remote,
            "token": connection.token,
            "signal": signal,
        }

    # -- what happened --------------------------------------------------------------------------

    def dialing(self, remote: str) -> None:
        """We start a connection to ``remote`` as initiator (a ``Dial``, or the mesh asked)."""
        self._connections[remote] = _Connection(initiator=True)

    def connection_closed(self, remote: str) -> dict[str, Any] | None:
        """A connection ended (failed, closed, given up); returns the announce to publish,
        if any: y-webrtc announces again whenever it has room, and so do we."""
        self._connections.pop(remote, None)
        return self.announce()

    def receive(self, payload: object) -> list[RoomAction]:
        """A payload published to the room's topic (decoded); returns what to do."""
        if not isinstance(payload, dict):
            return self._ignore("not an object")
        sender = payload.get("from")
        if not isinstance(sender, str) or not _is_id(sender) or sender == self.peer_id:
            return self._ignore("no sender, or our own")
        target = payload.get("to")
        if target is not None and target != self.peer_id:
            return []  # for someone else: servers that broadcast send us everyone's
        kind = payload.get("type")
        if kind == "announce":
            return self._announced(sender)
        if kind == "signal" and target == self.peer_id:
            return self._signalled(sender, payload)
        return self._ignore(f"payload type {str(kind)[:40]!r}")

    # -- rules ----------------------------------------------------------------------------------

    def _announced(self, remote: str) -> list[RoomAction]:
        if remote in self._connections or len(self._connections) >= self.max_conns:
            return []
        self.dialing(remote)
        return [Dial(remote)]

    def _signalled(self, remote: str, payload: dict[str, Any]) -> list[RoomAction]:
        signal = payload.get("signal")
        if not isinstance(signal, dict):
            return self._ignore("signal without a body")
        kind = signal.get("type")
        connection = self._connections.get(remote)
        if kind == "offer":
            sdp = signal.get("sdp")
            token = payload.get("token")
            if not (isinstance(sdp, str) and len(sdp) <= _MAX_SDP_LENGTH):
                return self._ignore("offer without an SDP")
            if (
                connection is not None
                and connection.token is not None
                and isinstance(token, int | float)
                and not isinstance(token, bool)
                and connection.token > token
            ):
                return [DropOffer(remote)]  # glare: our offer's token is larger
            # Incoming offers are always taken, whatever max_conns says (as y-webrtc does).
            self._connections[remote] = _Connection(initiator=False)
            return [AcceptOffer(remote, sdp)]
        if connection is None:
            return self._ignore(f"{str(kind)[:20]} for no connection")
        if kind == "answer":
            sdp = signal.get("sdp")
            if not (connection.initiator and isinstance(sdp, str) and len(sdp) <= _MAX_SDP_LENGTH):
                return self._ignore("answer we did not ask for")
            connection.token = None
            return [RemoteAnswer(remote, sdp)]
        if kind == "candidate" or "candidate" in signal:
            candidate = parse_candidate(signal.get("candidate"))
            if candidate is None:
                return []  # TCP, end-of-candidates or malformed: aioice has no use for it
            line, mid, index = candidate
            return [RemoteCandidate(remote, line, mid, index)]
        return self._ignore(f"signal type {str(kind)[:20]!r}")

    def _ignore(self, why: str) -> list[RoomAction]:
        self.ignored += 1
        logger.debug("= %s ignores a payload: %s", self.peer_id, why)
        return []


def parse_candidate(value: object) -> tuple[str, str | None, int | None] | None:
    """A trickled candidate as ``(candidate line without "candidate:", sdpMid, index)``, or
    None if it is not a UDP candidate aioice can use (libwebrtc trickles TCP ones too)."""
    if not isinstance(value, dict):
        return None
    line = value.get("candidate")
    mid = value.get("sdpMid")
    index = value.get("sdpMLineIndex")
    if not isinstance(line, str) or not line.startswith("candidate:") or len(line) > 1024:
        return None
    bits = line[len("candidate:") :].split()
    if len(bits) < 8 or bits[2].lower() != "udp" or bits[6] != "typ":
        return None
    if mid is not None and not isinstance(mid, str):
        return None
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        return None
    if mid is None and index is None:
        return None
    return line[len("candidate:") :], mid, index


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_ID_LENGTH
