"""The WebRTC transport: one aiortc peer connection and data channel per remote peer.

Offers and answers travel through the signaling client; once a channel is open, the link
needs no server. aiortc gathers all candidates before ``setLocalDescription`` returns, so
one offer and one answer carry everything (no trickle). ``ice_servers`` are passed as
given (none by default: aiortc's own default is a public STUN server, which stalls
gathering for seconds without internet), and ``host_addresses`` can hold ICE to loopback.
Which offers get an answer, and how many candidates count, is ``protocol/answer_budget.py``'s:
each offer carries a random id and its sender's time, and an answer echoes the id it answers.
Which STUN/TURN servers and transport policy a connection gets is ``ice_config.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import ssl as ssl_module
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import msgpack
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from crdtsync.errors import ConfigError, SignalingError, TransportError
from crdtsync.protocol.answer_budget import (
    DEFAULT_MAX_CANDIDATES,
    Admitted,
    AnswerBudget,
    Refused,
    ReplayGuard,
    cap_candidates,
)
from crdtsync.signaling.client import SignalingClient
from crdtsync.signaling.identity import Identity
from crdtsync.signaling.room_key import RoomKey
from crdtsync.signaling.turn import expires_at
from crdtsync.transport.base import Connector, Link, LinkListener
from crdtsync.transport.ice_config import (
    IceServer,
    IceTransportPolicy,
    checked_ice_servers,
    ice_configuration,
    relay_problem,
    with_offered_turn,
)
from crdtsync.transport.ice_hosts import host_addresses
from crdtsync.transport.stats import CandidatePath

__all__ = [
    "IceServer",  # re-exported: Peer's callers know it from here
    "WebRTCConnector",
    "WebRTCLink",
    "attach_listener",
    "connect_tasks_ended",
    "ice_configuration",  # re-exported, as IceServer
    "selected_path",
    "when_open",
]

logger = logging.getLogger(__name__)

CHANNEL_LABEL = "crdtsync"
# How long a closing link waits for what it sent last (its BYE, final updates) to leave.
CLOSE_DRAIN_TIMEOUT = 1.0
OFFER_ID_SIZE = 16  # random bytes: no two offers of any peer ever share one


def selected_path(connection: RTCPeerConnection) -> CandidatePath | None:
    """The candidate pair ICE selected for ``connection``, or None before one is: the one
    aioice internal read here (its nominated pair of the one component data channels use)."""
    sctp = connection.sctp
    ice = None if sctp is None else getattr(sctp.transport.transport, "_connection", None)
    pair = None if ice is None else getattr(ice, "_nominated", {}).get(1)
    if pair is None:
        return None
    local, remote = pair.local_candidate, pair.remote_candidate
    return CandidatePath(
        str(local.type), (str(local.host), int(local.port)),
        str(remote.type), (str(remote.host), int(remote.port)),
    )  # fmt: skip


class WebRTCLink(Link):
    """A data channel to one remote peer, with the peer connection that carries it."""

    def __init__(
        self,
        remote_id: str,
        connection: RTCPeerConnection,
        channel: RTCDataChannel,
        *,
        initiator: bool,
    ) -> None:
        super().__init__(remote_id, initiator=initiator)
        self.connection = connection
        self.channel = channel
        self.closed = False

    def __repr__(self) -> str:
        return f"<WebRTCLink to {self.remote_id}>"

    def send(self, data: bytes) -> None:
        if self.closed or self.channel.readyState != "open":
            raise TransportError(f"send on closed link to {self.remote_id}")
        try:
            self.channel.send(data)
        except Exception as exc:  # aiortc raises ValueError / InvalidStateError
            raise TransportError(f"send to {self.remote_id} failed: {exc}") from exc

    @property
    def buffered_amount(self) -> int:
        return int(self.channel.bufferedAmount)

    @property
    def path(self) -> CandidatePath | None:
        return selected_path(self.connection)

    def set_low_water(self, amount: int) -> None:
        super().set_low_water(amount)
        self.channel.bufferedAmountLowThreshold = amount

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self._drained()
        # Also when the remote closed first: aiortc then closes the connection in a task of
        # its own, which nobody awaits (deleting a TURN allocation makes it last a round
        # trip); its close() is idempotent and waits for that one. A second close() awaits
        # the first one's future, so a second one cancelled cancels that future, and the
        # first then fails setting it, its very last step (the connection is closed).
        with contextlib.suppress(asyncio.InvalidStateError):
            await self.connection.close()

    async def _drained(self) -> None:
        """Wait (briefly) until aiortc has handed everything queued to SCTP. Closing first
        would drop it, and fail aiortc's own queued send tasks with ConnectionError."""
        if self.channel.readyState != "open" or self.channel.bufferedAmount == 0:
            return
        drained = asyncio.Event()
        self.channel.bufferedAmountLowThreshold = 0  # closing: backpressure is over
        self.channel.on("bufferedamountlow", drained.set)
        try:
            async with asyncio.timeout(CLOSE_DRAIN_TIMEOUT):
                await drained.wait()
        except TimeoutError:
            logger.debug("= %s closes with %d bytes unsent", self, self.channel.bufferedAmount)


class WebRTCConnector(Connector):
    """Joins a room through a signaling server and opens WebRTC links to its members."""

    def __init__(
        self,
        signaling: str | Sequence[str],
        room: str,
        *,
        identity: Identity | None = None,
        token: str | None = None,
        password: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        ice_servers: Sequence[str | IceServer] = (),
        ice_transport_policy: IceTransportPolicy = "all",
        host_addresses: Sequence[str] | None = None,
        connect_timeout: float = 15.0,
        budget: AnswerBudget | None = None,  # its defaults say where they come from
        max_candidates: int = DEFAULT_MAX_CANDIDATES,  # per offer or answer we receive
    ) -> None:
        if password == "":
            raise ConfigError("a room password must not be empty (None: no password)")
        self.room = room
        self.host_addresses = None if host_addresses is None else tuple(host_addresses)
        self.connect_timeout = connect_timeout
        self.budget = budget or AnswerBudget()
        self.max_candidates = max_candidates
        self._replays = ReplayGuard()
        self._ice_servers = checked_ice_servers(ice_servers)
        self._policy = ice_transport_policy
        ice_configuration(self._ice_servers, ice_transport_policy)  # refuse a bad one now
        self._warned: set[str] = set()  # ICE problems logged already (once each)
        self.signaling = SignalingClient(
            signaling, self, rooms={room: token}, identity=identity, ssl=ssl
        )
        self._password = password
        self._room_key: RoomKey | None = None
        self.rejected_signals = 0  # payloads dropped: undecodable, another key, replayed
        self._listener: LinkListener | None = None
        # (remote, dial id) -> the id of the offer we sent, and where its answer goes
        self._answers: dict[tuple[str, int], tuple[bytes, asyncio.Future[str]]] = {}
        self._answering: dict[int, asyncio.Task[None]] = {}  # budget ticket -> answer task
        self._links: set[WebRTCLink] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._dial_ids = itertools.count(1)
        self._closed = False

    @property
    def local_id(self) -> str:
        return self.signaling.peer_id

    def _configuration(self) -> RTCConfiguration:
        """A new connection's ICE configuration: our servers, plus the TURN server the
        signaling server offered at our last login unless we have our own."""
        offered = self.signaling.turn_credentials
        expiry = None if offered is None else expires_at(offered.username)
        if expiry is not None and expiry <= time.time():
            self._warn_once(
                f"the TURN credentials the signaling server gave at login expired at {expiry:.0f} "
                "(Unix time): not using them until the next login"
            )
            offered = None
        servers, ignored = with_offered_turn(self._ice_servers, offered)
        if ignored:
            using = next((server.url for server in servers if server.is_turn), None)
            self._warn_once(
                f"not using the TURN URLs {list(ignored)} the signaling server offered: "
                f"aiortc uses one TURN server ({using or 'none usable offered'})"
            )
        return ice_configuration(servers, self._policy)

    def _check_relay(self, connection: RTCPeerConnection, configuration: RTCConfiguration) -> None:
        """After gathering: a relay-only connection without a relay candidate fails now (no
        check could succeed); one that may go direct goes on, with a warning (once)."""
        problem = relay_problem(connection, configuration)
        if problem is None:
            return
        self._warn_once(problem)
        if configuration.iceTransportPolicy is RTCIceTransportPolicy.RELAY:
            raise TransportError(problem)

    def _warn_once(self, problem: str) -> None:
        if problem not in self._warned:
            self._warned.add(problem)
            logger.warning("! %s: %s", self.local_id, problem)

    async def start(self, listener: LinkListener) -> None:
        if self._password is not None:  # slow on purpose, so off the event loop
            self._room_key = await asyncio.to_thread(RoomKey.derive, self._password, self.room)
        self._listener = listener
        await self.signaling.start()
        await self.signaling.wait_joined(self.room, self.connect_timeout)

    def dial(self, remote_id: str) -> None:
        self._spawn(
            self._dial(remote_id, next(self._dial_ids), self.budget.dial_started(remote_id))
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in list(self._links):
            await link.aclose()
        await self.signaling.aclose()
        await connect_tasks_ended()

    # -- SignalingListener ----------------------------------------------------------------------

    def members_changed(self, room: str, members: frozenset[str]) -> None:
        if self._listener is not None and not self._closed:
            self._listener.members_changed(members)

    def signal_received(self, room: str, peer_id: str, data: bytes) -> None:
        try:
            if self._room_key is not None:
                data = self._room_key.open(data, sender=peer_id, recipient=self.local_id)
            message = msgpack.unpackb(data, raw=False, max_str_len=1 << 16, max_map_len=8)
            kind, sdp, dial_id = message["type"], message["sdp"], message["dial"]
            offer_id = message["offer"]
            if not (isinstance(sdp, str) and isinstance(dial_id, int)):
                raise TypeError("sdp must be a string and dial an int")
            if not (isinstance(offer_id, bytes) and len(offer_id) == OFFER_ID_SIZE):
                raise TypeError(f"offer id must be {OFFER_ID_SIZE} bytes")
            if kind == "offer":
                sent_at = message["time"]
                if not isinstance(sent_at, int | float) or isinstance(sent_at, bool):
                    raise TypeError("an offer's time must be a number")
                stale = self._replays.check(offer_id, float(sent_at), time.time())
                if stale is not None:
                    raise SignalingError(stale)
        except Exception as exc:  # hostile or broken peers must not reach our code
            self.rejected_signals += 1
            logger.warning("! %s: refused a signal from %s: %s", self.local_id, peer_id, exc)
            return
        if kind == "offer":
            verdict = self.budget.offer_received(peer_id, asyncio.get_running_loop().time())
            if not isinstance(verdict, Admitted):
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "! %s: no answer to %s: %s", self.local_id, peer_id, verdict.reason
                    )
                return
            self._replays.seen(offer_id, time.time())
            if verdict.replaces is not None and (old := self._answering.get(verdict.replaces)):
                old.cancel()  # one pending answer per remote: the newer offer wins
            task = self._spawn(self._answer(peer_id, sdp, dial_id, offer_id, verdict.ticket))
            self._answering[verdict.ticket] = task
        elif kind == "answer":
            # Bound to the offer: only the id we sent for that dial, and only once.
            expected = self._answers.get((peer_id, dial_id))
            if expected is not None and expected[0] == offer_id and not expected[1].done():
                expected[1].set_result(sdp)
            else:
                self.rejected_signals += 1
                logger.info(
                    "! %s: refused an answer from %s: no such offer", self.local_id, peer_id
                )

    # -- dialing and answering ------------------------------------------------------------------

    async def _dial(self, remote_id: str, dial_id: int, verdict: Admitted | Refused) -> None:
        if not isinstance(verdict, Admitted):
            if self._listener is not None and not self._closed:
                self._listener.link_failed(remote_id, f"not dialed: {verdict.reason}")
            return
        configuration = self._configuration()
        connection = RTCPeerConnection(configuration)
        link: WebRTCLink | None = None
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        offer_id = os.urandom(OFFER_ID_SIZE)
        self._answers[(remote_id, dial_id)] = (offer_id, future)
        try:
            async with asyncio.timeout(self.connect_timeout):
                channel = connection.createDataChannel(CHANNEL_LABEL, ordered=True)
                opened = when_open(channel)
                with host_addresses(self.host_addresses):
                    await connection.setLocalDescription(await connection.createOffer())
                self._check_relay(connection, configuration)
                offer = self._signal(
                    remote_id,
                    {"type": "offer", "time": time.time()},
                    connection.localDescription.sdp,
                    dial_id,
                    offer_id,
                )
                if not await self.signaling.send_signal(self.room, remote_id, offer):
                    raise SignalingError("not connected to the signaling server")
                answer = self._capped(remote_id, await future)
                await connection.setRemoteDescription(RTCSessionDescription(answer, "answer"))
                await opened
            link = WebRTCLink(remote_id, connection, channel, initiator=True)
        except asyncio.CancelledError:  # the connector is closing: leave no sockets open
            await connection.close()
            raise
        except Exception as exc:  # aiortc's own errors, timeouts, a lost server: all a failed dial
            await connection.close()
            if self._listener is not None and not self._closed:
                self._listener.link_failed(
                    remote_id, f"no link within {self.connect_timeout} s: {exc!r}"
                )
            return
        finally:
            self._answers.pop((remote_id, dial_id), None)
            self.budget.settled(verdict.ticket)
        self._opened(link)

    async def _answer(
        self, remote_id: str, offer: str, dial_id: int, offer_id: bytes, ticket: int
    ) -> None:
        configuration = self._configuration()
        connection = RTCPeerConnection(configuration)
        channels: asyncio.Queue[RTCDataChannel] = asyncio.Queue()
        connection.on("datachannel", channels.put_nowait)
        try:
            async with asyncio.timeout(self.connect_timeout):
                offer = self._capped(remote_id, offer)
                await connection.setRemoteDescription(RTCSessionDescription(offer, "offer"))
                with host_addresses(self.host_addresses):
                    await connection.setLocalDescription(await connection.createAnswer())
                self._check_relay(connection, configuration)
                answer = self._signal(
                    remote_id,
                    {"type": "answer"},
                    connection.localDescription.sdp,
                    dial_id,
                    offer_id,
                )
                await self.signaling.send_signal(self.room, remote_id, answer)
                channel = await channels.get()
                if channel.label != CHANNEL_LABEL:
                    raise ValueError(f"unexpected data channel {channel.label!r}")
                if channel.readyState != "open":
                    await when_open(channel)
        except asyncio.CancelledError:
            await connection.close()
            raise
        except Exception as exc:  # as for dials: any failure ends this attempt, logged
            logger.info("! %s: answering %s failed: %r", self.local_id, remote_id, exc)
            await connection.close()
            return
        finally:
            self._answering.pop(ticket, None)
            self.budget.settled(ticket)
        self._opened(WebRTCLink(remote_id, connection, channel, initiator=False))

    def _capped(self, remote_id: str, sdp: str) -> str:
        """``sdp`` with at most ``max_candidates`` candidates: each is a check we would send."""
        sdp, _, dropped = cap_candidates(sdp, self.max_candidates)
        if dropped:
            logger.warning(
                "! %s: dropped %d candidates from %s (at most %d)",
                self.local_id,
                dropped,
                remote_id,
                self.max_candidates,
            )
        return sdp

    def _opened(self, link: WebRTCLink) -> None:
        if self._listener is None or self._closed:
            self._spawn(link.aclose())
            return
        self._links.add(link)
        attach_listener(link, self._listener, name=self.local_id, gone=self._gone)

    def _gone(self, link: WebRTCLink) -> None:
        self._links.discard(link)
        if not self._closed:
            self._spawn(link.connection.close())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _signal(
        self, remote_id: str, fields: dict[str, Any], sdp: str, dial_id: int, offer_id: bytes
    ) -> bytes:
        """An offer or answer for ``remote_id``, sealed and signed if the room has a key."""
        message = {**fields, "sdp": sdp, "dial": dial_id, "offer": offer_id}
        data = msgpack.packb(message, use_bin_type=True)
        if self._room_key is None:
            return data
        return self._room_key.seal(data, sender=self.signaling.identity, recipient=remote_id)


def attach_listener(
    link: WebRTCLink, listener: LinkListener, *, name: str, gone: Callable[[WebRTCLink], None]
) -> None:
    """Hand an open link's channel events to ``listener``, and say ``link_opened``.

    When the channel closes or the connection fails, ``gone(link)`` runs (after
    ``link_lost``, unless we closed the link ourselves) so the connector can let it go.
    """

    def on_message(message: bytes | str) -> None:
        # An exception escaping an aiortc handler tears the whole connection down:
        # the mesh's core never raises on peer bytes, and this guard makes sure.
        try:
            if isinstance(message, bytes) and not link.closed:
                listener.data_received(link, message)
        except Exception:
            logger.exception("! %s: handling a message from %s failed", name, link.remote_id)

    def on_close() -> None:
        if not link.closed:
            link.closed = True
            listener.link_lost(link, "data channel closed")
        gone(link)

    async def on_state_change() -> None:
        if link.connection.connectionState == "failed":
            on_close()

    def on_drained() -> None:
        if not link.closed:
            listener.link_drained(link)

    link.channel.on("message", on_message)
    link.channel.on("bufferedamountlow", on_drained)
    link.channel.on("close", on_close)
    link.connection.on("connectionstatechange", on_state_change)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("= %s: data channel to %s open via %s", name, link.remote_id, link.path)
    listener.link_opened(link)


# aiortc starts a connect task per peer connection and does not await it in close(): after
# a close mid-setup it lingers for a moment. Waiting for it keeps "closed" meaning closed.
CONNECT_TASK = "RTCPeerConnection.__connect"
CONNECT_TASK_GRACE = 2.0  # seconds; in practice it ends within milliseconds
CONSENT_TASK = "Connection.query_consent"  # aioice's consent freshness checks (RFC 7675)


def when_open(channel: RTCDataChannel) -> asyncio.Future[None]:
    """A future done once ``channel`` opens (subscribe before it can open)."""
    opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_open() -> None:
        if not opened.done():
            opened.set_result(None)

    channel.on("open", on_open)
    return opened


async def connect_tasks_ended() -> None:
    """Wait (briefly) for the connect tasks aiortc starts per connection and does not await
    when it closes; anything closing connections of its own (tests, benchmarks) calls it.

    Then stop the consent checks of ICE connections closed already: aioice starts them when
    its checks complete, and a close that lands between completion and that start (a
    connection given up at the moment it connects, as in glare) leaves them running.
    """
    tasks = [task for task in asyncio.all_tasks() if _task_name(task) == CONNECT_TASK]
    if tasks:
        await asyncio.wait(tasks, timeout=CONNECT_TASK_GRACE)
    orphans = [
        task
        for task in asyncio.all_tasks()
        if _task_name(task) == CONSENT_TASK and _closed_ice_connection(task)
    ]
    for task in orphans:
        task.cancel()
    if orphans:
        await asyncio.wait(orphans, timeout=CONNECT_TASK_GRACE)


def _task_name(task: asyncio.Task[Any]) -> str:
    return str(getattr(task.get_coro(), "__qualname__", ""))


def _closed_ice_connection(task: asyncio.Task[Any]) -> bool:
    """Whether a consent task belongs to an aioice connection that was closed."""
    frame = getattr(task.get_coro(), "cr_frame", None)
    owner = None if frame is None else frame.f_locals.get("self")
    return bool(getattr(owner, "_closing", False))
