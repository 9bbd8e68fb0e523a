"""One peer's side of a y-webrtc room's signaling, sans I/O: announces, offers, glare.

y-webrtc peers find each other by publishing to the room's topic (y-webrtc
``SignalingConn``): ``announce`` says "I am here", and whoever hears it and has room for
one more connection offers to the newcomer; ``signal`` carries simple-peer's offer, answer
and trickled candidates to one peer id. Two peers that offer each other at once (glare)
keep the offer whose glare token is larger, as y-webrtc does. This core reads decoded
payloads (plaintext, or opened with the room password) and says what to do; the connector
(``transport/ywebrtc.py``) owns the peer connections. Offers, dials and remote candidates
are bounded by ``protocol/answer_budget.py``: y-webrtc's sender ids are self-declared, so
only the caps in all hold against a flood of fresh ones.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from crdtsync.protocol.answer_budget import (
    DEFAULT_MAX_CANDIDATES,
    Admitted,
    AnswerBudget,
    cap_candidates,
)

__all__ = [
    "GLARE_HANDICAP_MS",
    "GLARE_WAIT",
    "GLARE_WINDOW",
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
    """Open a connection to ``remote`` as the initiator (we send the offer), after ``wait``
    seconds: time for the remote's own offer to come first, when it may be dialing us too."""

    remote: str
    wait: float = 0.0


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


# How much earlier than the clock our offers' glare tokens are (see ``signal``).
GLARE_HANDICAP_MS = 1000.0
# An announce heard this soon after our own may come from a peer that heard ours too, and
# is dialing us: both were subscribed when the other announced, so the two announces crossed
# within about a signaling round trip (milliseconds on a LAN). A newcomer that subscribed
# later announces later (a Node y-webrtc peer started right after ours: 125 ms, measured),
# and is dialed at once. Within the window we hold our offer this long for the remote's (a
# libwebrtc peer whose offer meets ours mid-creation can fail both: measured with
# @roamhq/wrtc, "Failed to set SSL role"). Wider round trips fall back on the glare tokens.
GLARE_WINDOW = 0.075
GLARE_WAIT = 0.25


@dataclass(slots=True)
class _Connection:
    initiator: bool
    ticket: int | None = None  # the budget's, until the connection opens or closes
    token: float | None = None  # glare token of the first signal we sent, until answered
    candidates: int = 0  # remote candidates taken, in descriptions and trickled


class YWebrtcRoom:
    """Signaling state of one room for one peer: feed payloads, publish what it returns."""

    def __init__(
        self,
        peer_id: str,
        *,
        max_conns: int,
        rng: random.Random | None = None,
        budget: AnswerBudget | None = None,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
    ) -> None:
        self.peer_id = peer_id
        self.max_conns = max_conns
        self.budget = budget or AnswerBudget()
        self.max_candidates = max_candidates
        self._rng = rng or random.Random()
        self._connections: dict[str, _Connection] = {}
        self._announced_at = float("-inf")
        self.ignored = 0  # payloads that were not for us or not understood

    @property
    def connections(self) -> frozenset[str]:
        """Remote peers we have a connection with (opening or open)."""
        return frozenset(self._connections)

    # -- what to publish ------------------------------------------------------------------------

    def announce(self, now: float) -> dict[str, Any] | None:
        """The announce to publish at ``now`` (on (re)connect), or None while the room is full."""
        if self._counted() >= self.max_conns:
            return None
        self._announced_at = now
        return {"type": "announce", "from": self.peer_id}

    def signal(self, remote: str, signal: dict[str, Any], now_ms: float) -> dict[str, Any]:
        """A ``signal`` payload for ``remote``, with the connection's glare token."""
        connection = self._connections.get(remote)
        if connection is None:
            connection = self._connections[remote] = _Connection(initiator=False)
        if connection.token is None:
            # y-webrtc draws Date.now() + Math.random(): milliseconds, a float. Our offers
            # draw from a second earlier, so that in glare a y-webrtc peer's offer wins and
            # we answer it: we drop our own offer cleanly, while simple-peer cannot always
            # roll its back (@roamhq/wrtc: "Called in wrong state: have-remote-offer", and the
            # pair links only after our dial times out).
            handicap = GLARE_HANDICAP_MS if connection.initiator else 0.0
            connection.token = now_ms - handicap + self._rng.random()
        return {
            "type": "signal",
            "from": self.peer_id,
            "to": remote,
            "token": connection.token,
            "signal": signal,
        }

    # -- what happened --------------------------------------------------------------------------

    def dialing(self, remote: str) -> str | None:
        """We start a connection to ``remote`` as initiator (a ``Dial``, or the mesh asked);
        None, or why not: too many setups are pending (the budget's cap)."""
        verdict = self.budget.dial_started(remote)
        if not isinstance(verdict, Admitted):
            return verdict.reason
        self._replace(remote, _Connection(initiator=True, ticket=verdict.ticket))
        return None

    def connection_opened(self, remote: str) -> None:
        """The connection to ``remote`` is open: it no longer counts as pending."""
        connection = self._connections.get(remote)
        if connection is not None and connection.ticket is not None:
            self.budget.settled(connection.ticket)
            connection.ticket = None

    def connection_closed(self, remote: str, now: float) -> dict[str, Any] | None:
        """A connection ended (failed, closed, given up); returns the announce to publish,
        if any: y-webrtc announces again whenever it has room, and so do we."""
        connection = self._connections.pop(remote, None)
        if connection is not None and connection.ticket is not None:
            self.budget.settled(connection.ticket)
        return self.announce(now)

    def receive(self, payload: object, now: float) -> list[RoomAction]:
        """A payload published to the room's topic (decoded) at ``now`` (monotonic seconds);
        returns what to do."""
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
            return self._announced(sender, now)
        if kind == "signal" and target == self.peer_id:
            return self._signalled(sender, payload, now)
        return self._ignore(f"payload type {str(kind)[:40]!r}")

    # -- rules ----------------------------------------------------------------------------------

    def _announced(self, remote: str, now: float) -> list[RoomAction]:
        connection = self._connections.get(remote)
        if connection is not None and connection.ticket is None:
            return []  # linked already
        # A y-webrtc peer announces only while it lacks connections: one whose setup with us
        # is still pending has given it up (its simple-peer failed on its side), so we start
        # over now rather than after our connect timeout.
        replaced = connection is not None and connection.initiator  # counted, and goes
        if self._counted() - replaced >= self.max_conns:
            return []
        refused = self.dialing(remote)
        if refused is not None:
            return self._ignore(f"announce of {remote[:40]}: {refused}")
        # Right after our own announce, the remote may have heard it and be dialing us: give
        # its offer a moment to come first, and answer it instead of crossing it (glare).
        recent = now - self._announced_at < GLARE_WINDOW
        return [Dial(remote, wait=GLARE_WAIT if recent else 0.0)]

    def _signalled(self, remote: str, payload: dict[str, Any], now: float) -> list[RoomAction]:
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
            # Incoming offers are taken whatever max_conns says (as y-webrtc does), within
            # the budget: one pending answer per remote, a few answers a second.
            verdict = self.budget.offer_received(remote, now)
            if not isinstance(verdict, Admitted):
                return self._ignore(f"offer from {remote[:40]}: {verdict.reason}")
            connection = _Connection(initiator=False, ticket=verdict.ticket)
            self._replace(remote, connection)
            return [AcceptOffer(remote, self._capped(connection, remote, sdp))]
        if connection is None:
            return self._ignore(f"{str(kind)[:20]} for no connection")
        if kind == "answer":
            sdp = signal.get("sdp")
            if not (connection.initiator and isinstance(sdp, str) and len(sdp) <= _MAX_SDP_LENGTH):
                return self._ignore("answer we did not ask for")
            connection.token = None
            return [RemoteAnswer(remote, self._capped(connection, remote, sdp))]
        if kind == "candidate" or "candidate" in signal:
            candidate = parse_candidate(signal.get("candidate"))
            if candidate is None:
                return []  # TCP, end-of-candidates or malformed: aioice has no use for it
            if connection.candidates >= self.max_candidates:
                return self._ignore(f"candidate from {remote[:40]} past {self.max_candidates}")
            connection.candidates += 1
            line, mid, index = candidate
            return [RemoteCandidate(remote, line, mid, index)]
        return self._ignore(f"signal type {str(kind)[:20]!r}")

    def _counted(self) -> int:
        """Connections that count against max_conns: open ones and our own dials. Answers
        still pending do not (unlike y-webrtc): a flood of offers under fresh ids must not
        stop us from dialing the next newcomer who announces."""
        return sum(c.initiator or c.ticket is None for c in self._connections.values())

    def _replace(self, remote: str, connection: _Connection) -> None:
        """``connection`` is now the one with ``remote``; the one before stops pending."""
        old = self._connections.get(remote)
        if old is not None and old.ticket is not None:
            self.budget.settled(old.ticket)
        self._connections[remote] = connection

    def _capped(self, connection: _Connection, remote: str, sdp: str) -> str:
        """``sdp`` with only as many candidates as the connection has left to take."""
        sdp, kept, dropped = cap_candidates(sdp, self.max_candidates - connection.candidates)
        connection.candidates += kept
        if dropped:
            logger.warning(
                "! %s: dropped %d candidates from %s (at most %d)",
                self.peer_id,
                dropped,
                remote[:40],
                self.max_candidates,
            )
        return sdp

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
