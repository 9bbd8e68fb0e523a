"""Which STUN and TURN servers a connection uses, and how: aiortc's ``RTCConfiguration``.

aiortc uses one STUN and one TURN server, TURN over UDP or TCP (``turns:`` over TLS), and
skips anything else without a word; here what it would skip is a ``ConfigError`` instead.
``ice_transport_policy="relay"`` keeps ICE to TURN relays. TURN credentials the signaling
server hands out (``signaling/turn.py``) join a peer's own servers when it has no TURN
server of its own (``with_offered_turn``). After gathering, ``relay_problem`` says why a
connection that was to have a relay candidate has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import parse_stun_turn_uri

from crdtsync.errors import ConfigError
from crdtsync.protocol.signaling import TurnCredentials
from crdtsync.transport import ice_pacing, sctp_timers, turn_close

__all__ = [
    "ICE_TRANSPORT_POLICIES",
    "IceServer",
    "IceTransportPolicy",
    "checked_ice_servers",
    "ice_configuration",
    "relay_problem",
    "with_offered_turn",
]


IceTransportPolicy = Literal["all", "relay"]
"""Which candidates ICE may use: all of them, or only TURN relays ("relay")."""
# aiortc wants its enum: the plain string "relay" raises KeyError deep inside.
ICE_TRANSPORT_POLICIES: dict[str, RTCIceTransportPolicy] = {
    "all": RTCIceTransportPolicy.ALL,
    "relay": RTCIceTransportPolicy.RELAY,
}
# The TURN transports aiortc allocates over (others it skips): turn: over UDP or TCP,
# turns: over TLS (TCP). Relays are UDP either way (aioice).
_TURN_TRANSPORTS = {"turn": ("udp", "tcp"), "turns": ("tcp",)}


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server: ``IceServer("turn:host:3478?transport=udp", "user", "secret")``."""

    url: str
    username: str | None = None
    credential: str | None = None

    @property
    def is_turn(self) -> bool:
        return self.url.startswith(("turn:", "turns:"))


def _checked(server: IceServer) -> None:
    """ConfigError unless aiortc would use ``server`` as given."""
    try:
        parsed = parse_stun_turn_uri(server.url)
    except ValueError as exc:
        raise ConfigError(f"ICE server {server.url!r} must be a stun: or turn: URL: {exc}") from exc
    if not server.is_turn:
        return
    scheme, transport = parsed["scheme"], parsed["transport"]
    if transport not in _TURN_TRANSPORTS[scheme]:
        raise ConfigError(
            f"TURN server {server.url!r}: aiortc ignores {scheme}: over {transport}; use "
            + " or ".join(f"{scheme}:...?transport={t}" for t in _TURN_TRANSPORTS[scheme])
        )
    if not server.username or not server.credential:
        raise ConfigError(f"TURN server {server.url!r} needs a username and a credential")


def checked_ice_servers(servers: Sequence[str | IceServer]) -> tuple[IceServer, ...]:
    """``servers`` as ``IceServer``s, each checked; ConfigError for what aiortc would ignore
    without a word: a second STUN or a second TURN server (it uses only the first of each),
    a TURN transport it lacks, a TURN server without credentials."""
    checked = tuple(s if isinstance(s, IceServer) else IceServer(s) for s in servers)
    first: dict[bool, IceServer] = {}
    for server in checked:
        _checked(server)
        if server.is_turn in first:
            kind = "TURN" if server.is_turn else "STUN"
            raise ConfigError(
                f"aiortc uses only the first {kind} server ({first[server.is_turn].url!r}) and "
                f"would ignore {server.url!r}: give one {kind} server"
            )
        first[server.is_turn] = server
    return checked


def with_offered_turn(
    own: Sequence[IceServer], offered: TurnCredentials | None
) -> tuple[tuple[IceServer, ...], tuple[str, ...]]:
    """Our own servers plus the first usable TURN URL the signaling server offered, unless we
    have a TURN server of our own (it wins: aiortc takes one); and the offered URLs left out."""
    if offered is None:
        return tuple(own), ()
    if any(server.is_turn for server in own):
        return tuple(own), offered.urls
    chosen: IceServer | None = None
    for url in offered.urls:
        candidate = IceServer(url, offered.username, offered.credential)
        try:
            _checked(candidate)
        except ConfigError:
            continue
        if candidate.is_turn:
            chosen = candidate
            break
    if chosen is None:
        return tuple(own), offered.urls
    return (*own, chosen), tuple(url for url in offered.urls if url != chosen.url)


def ice_configuration(
    servers: Sequence[str | IceServer], policy: IceTransportPolicy = "all"
) -> RTCConfiguration:
    """aiortc's configuration for these STUN/TURN servers (none: host candidates only) and
    transport policy; ConfigError for what aiortc would ignore (``checked_ice_servers``).

    Every connection of ours is built with one, so this is also where ICE checks get paced
    at 5 ms instead of aioice's 20 ms (``ice_pacing``), where closing a TURN allocation
    gets a deadline (``turn_close``), and where a lost SCTP packet is resent after 0.4 s
    rather than 1 s, as libwebrtc does (``sctp_timers``)."""
    if policy not in ICE_TRANSPORT_POLICIES:
        raise ConfigError(
            f"ice_transport_policy must be one of {sorted(ICE_TRANSPORT_POLICIES)} (got {policy!r})"
        )
    ice_pacing.install()
    turn_close.install()
    sctp_timers.install()
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(s.url, s.username, s.credential) for s in checked_ice_servers(servers)
        ],
        iceTransportPolicy=ICE_TRANSPORT_POLICIES[policy],
    )


def relay_problem(connection: RTCPeerConnection, configuration: RTCConfiguration) -> str | None:
    """After gathering: why ``connection`` has no relay candidate though it was to have one
    (a TURN server is configured, or the policy is relay-only), or None."""
    turn = [s for s in configuration.iceServers or () if str(s.urls).startswith("turn")]
    if not turn:
        if configuration.iceTransportPolicy is RTCIceTransportPolicy.RELAY:
            return (
                "ice_transport_policy='relay' but no TURN server: none in ice_servers, "
                "and the signaling server offered none"
            )
        return None
    if " typ relay" in connection.localDescription.sdp:
        return None
    return (
        f"TURN server {turn[0].urls} (user {turn[0].username!r}) gave no relay candidate: "
        "it refused the credentials, or did not answer"
    )
