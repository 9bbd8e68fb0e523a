"""The y-webrtc transport: a Python peer in a y-webrtc room, beside browser and Node peers.

Signaling is y-webrtc's (``signaling/ywebrtc_client.py``, rules in
``protocol/ywebrtc_room.py``); each remote peer gets one aiortc peer connection with one
data channel, as simple-peer makes them: the initiator creates an ordered, reliable channel
before its offer. aiortc puts every candidate in its offer or answer, so we never trickle
(and never send end-of-candidates, which makes simple-peer drop the connection); libwebrtc
trickles, so remote candidates are added as they come, queued until the remote description
is set, and TCP ones are skipped (aioice speaks UDP only). In password rooms every payload
is sealed with y-webrtc's room cipher; the data channel itself is only DTLS, as in y-webrtc.
Which offers get an answer, and how many candidates count, is the room core's
(``protocol/ywebrtc_room.py``, with ``protocol/answer_budget.py``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import ssl as ssl_module
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from crdtsync.errors import ConfigError, ProtocolError
from crdtsync.protocol.answer_budget import DEFAULT_MAX_CANDIDATES, AnswerBudget
from crdtsync.protocol.ywebrtc_crypto import RoomCipher
from crdtsync.protocol.ywebrtc_room import (
    AcceptOffer,
    Dial,
    DropOffer,
    RemoteAnswer,
    RemoteCandidate,
    RoomAction,
    YWebrtcRoom,
)
from crdtsync.signaling.ywebrtc_client import YWebrtcSignalingClient
from crdtsync.transport.base import Connector, LinkListener
from crdtsync.transport.ice_config import IceServer, IceTransportPolicy, ice_configuration
from crdtsync.transport.ice_hosts import host_addresses
from crdtsync.transport.webrtc import (
    WebRTCLink,
    attach_listener,
    connect_tasks_ended,
    when_open,
)

__all__ = ["YWebrtcConnector"]

logger = logging.getLogger(__name__)

# y-webrtc draws maxConns from 20-34; the mesh passes its own max_conns.
DEFAULT_MAX_CONNS = 20


@dataclass(slots=True)
class _Remote:
    """One remote peer's connection, from the first signal until it closes."""

    connection: RTCPeerConnection
    task: asyncio.Task[None] | None = None
    answer: asyncio.Future[str] | None = None
    candidates: list[Any] = field(default_factory=list)  # queued until described
    described: bool = False
    link: WebRTCLink | None = None


class YWebrtcConnector(Connector):
    """Joins a y-webrtc room through any y-webrtc signaling server; links to its peers."""

    def __init__(
        self,
        signaling: str | Sequence[str],
        room: str,
        *,
        token: str | None = None,
        password: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        ice_servers: Sequence[str | IceServer] = (),
        ice_transport_policy: IceTransportPolicy = "all",
        host_addresses: Sequence[str] | None = None,
        max_conns: int = DEFAULT_MAX_CONNS,
        connect_timeout: float = 15.0,
        rng: random.Random | None = None,
        budget: AnswerBudget | None = None,  # its defaults say where they come from
        max_candidates: int = DEFAULT_MAX_CANDIDATES,  # per connection, described or trickled
    ) -> None:
        if password == "":
            raise ConfigError("a room password must not be empty (None: no password)")
        self.room = room
        # y-webrtc's peer ids: a fresh random UUID per room, as its peers expect.
        self._local_id = str(uuid.uuid4())
        self.host_addresses = None if host_addresses is None else tuple(host_addresses)
        self.connect_timeout = connect_timeout
        self._configuration = ice_configuration(ice_servers, ice_transport_policy)
        self._password = password
        self._cipher: RoomCipher | None = None
        self._rooms = YWebrtcRoom(
            self._local_id,
            max_conns=max_conns,
            rng=rng,
            budget=budget,
            max_candidates=max_candidates,
        )
        self.budget = self._rooms.budget
        self.signaling = YWebrtcSignalingClient(
            signaling,
            self,
            topics=(room,),
            token=token,
            name=self._local_id,
            ssl=ssl,
            rng=rng,
        )
        self.rejected_signals = 0  # payloads we could not open (another password, garbage)
        self._listener: LinkListener | None = None
        self._remotes: dict[str, _Remote] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def local_id(self) -> str:
        return self._local_id

    async def start(self, listener: LinkListener) -> None:
        if self._password is not None:  # 100,000 PBKDF2 rounds: off the event loop
            self._cipher = await asyncio.to_thread(RoomCipher.derive, self._password, self.room)
        self._listener = listener
        await self.signaling.start()
        await self.signaling.wait_connected(timeout=self.connect_timeout)

    def dial(self, remote_id: str) -> None:
        if remote_id not in self._remotes:
            refused = self._rooms.dialing(remote_id)
            if refused is None:
                self._act(Dial(remote_id))
            else:
                self._spawn(self._not_dialed(remote_id, refused))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for remote in list(self._remotes.values()):
            if remote.link is not None:
                await remote.link.aclose()
            else:
                await remote.connection.close()
        self._remotes.clear()
        await self.signaling.aclose()
        await connect_tasks_ended()

    # -- TopicListener --------------------------------------------------------------------------

    def signaling_connected(self) -> None:
        self._publish(self._rooms.announce(self._now()))

    def publish_received(self, topic: str, data: object) -> None:
        if self._closed:
            return
        if self._cipher is not None:
            if not isinstance(data, str):
                self.rejected_signals += 1  # y-webrtc ignores plaintext in password rooms
                return
            try:
                data = self._cipher.open_payload(data)
            except ProtocolError as exc:
                self.rejected_signals += 1
                logger.debug("! %s: cannot open a payload: %s", self._local_id, exc)
                return
        for action in self._rooms.receive(data, self._now()):
            self._act(action)

    # -- acting on the room's decisions ---------------------------------------------------------

    def _act(self, action: RoomAction) -> None:
        if isinstance(action, Dial):
            self._drop(action.remote, "the remote announced again: it gave our setup up")
            remote = self._remotes[action.remote] = _Remote(RTCPeerConnection(self._configuration))
            remote.task = self._spawn(self._dial(action.remote, remote, action.wait))
        elif isinstance(action, AcceptOffer):
            self._drop(action.remote, "replaced by the remote's offer")
            remote = self._remotes[action.remote] = _Remote(RTCPeerConnection(self._configuration))
            remote.task = self._spawn(self._answer(action.remote, remote, action.sdp))
        elif isinstance(action, DropOffer):
            logger.debug("= %s keeps its own offer to %s (glare)", self._local_id, action.remote)
        elif isinstance(action, RemoteAnswer):
            known = self._remotes.get(action.remote)
            if known is not None and known.answer is not None and not known.answer.done():
                known.answer.set_result(action.sdp)
        elif isinstance(action, RemoteCandidate):
            known = self._remotes.get(action.remote)
            if known is not None:
                try:
                    candidate = candidate_from_sdp(action.candidate)
                except (AssertionError, ValueError, IndexError) as exc:
                    logger.debug("! %s: bad candidate from %s: %r", self._local_id, action, exc)
                    return
                candidate.sdpMid = action.sdp_mid
                candidate.sdpMLineIndex = action.sdp_mline_index
                if known.described:
                    self._spawn(self._add_candidate(known, candidate))
                else:
                    known.candidates.append(candidate)

    async def _dial(self, remote_id: str, remote: _Remote, wait: float = 0.0) -> None:
        connection = remote.connection
        remote.answer = asyncio.get_running_loop().create_future()
        try:
            if wait:  # the room core's glare rule; an offer from the remote cancels us
                await asyncio.sleep(wait)
            async with asyncio.timeout(self.connect_timeout):
                # simple-peer's label: 20 random bytes in hex; nobody checks it.
                channel = connection.createDataChannel(secrets.token_hex(20), ordered=True)
                opened = when_open(channel)
                with host_addresses(self.host_addresses):
                    await connection.setLocalDescription(await connection.createOffer())
                self._signal(remote_id, "offer", connection.localDescription.sdp)
                answer = await remote.answer
                await connection.setRemoteDescription(RTCSessionDescription(answer, "answer"))
                await self._described(remote)
                await opened
        except asyncio.CancelledError:
            await connection.close()
            raise
        except Exception as exc:  # aiortc's errors, timeouts: all a failed dial
            logger.info("! %s: no link to %s: %r", self._local_id, remote_id, exc)
            await self._failed(remote_id, remote)
            return
        self._opened(remote_id, remote, WebRTCLink(remote_id, connection, channel, initiator=True))

    async def _answer(self, remote_id: str, remote: _Remote, offer: str) -> None:
        connection = remote.connection
        channels: asyncio.Queue[RTCDataChannel] = asyncio.Queue()
        connection.on("datachannel", channels.put_nowait)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await connection.setRemoteDescription(RTCSessionDescription(offer, "offer"))
                await self._described(remote)
                with host_addresses(self.host_addresses):
                    await connection.setLocalDescription(await connection.createAnswer())
                self._signal(remote_id, "answer", connection.localDescription.sdp)
                channel = await channels.get()
                if channel.readyState != "open":
                    await when_open(channel)
        except asyncio.CancelledError:
            await connection.close()
            raise
        except Exception as exc:  # as for dials: any failure ends this attempt, logged
            logger.info("! %s: answering %s failed: %r", self._local_id, remote_id, exc)
            await self._failed(remote_id, remote)
            return
        self._opened(remote_id, remote, WebRTCLink(remote_id, connection, channel, initiator=False))

    async def _described(self, remote: _Remote) -> None:
        """The remote description is set: add the candidates that came before it."""
        remote.described = True
        queued, remote.candidates = remote.candidates, []
        for candidate in queued:
            await self._add_candidate(remote, candidate)

    async def _add_candidate(self, remote: _Remote, candidate: Any) -> None:
        try:
            await remote.connection.addIceCandidate(candidate)
        except Exception as exc:  # a candidate aiortc cannot use is not worth the link
            logger.debug("! %s: candidate refused: %r", self._local_id, exc)

    async def _not_dialed(self, remote_id: str, reason: str) -> None:
        """Say a dial the budget refused failed (from a task: listeners are not re-entered)."""
        if self._listener is not None and not self._closed:
            self._listener.link_failed(remote_id, f"not dialed: {reason}")

    def _opened(self, remote_id: str, remote: _Remote, link: WebRTCLink) -> None:
        remote.task = None
        if self._listener is None or self._closed or self._remotes.get(remote_id) is not remote:
            self._spawn(link.aclose())
            return
        self._rooms.connection_opened(remote_id)
        remote.link = link
        attach_listener(link, self._listener, name=self._local_id, gone=self._gone)

    def _gone(self, link: WebRTCLink) -> None:
        remote = self._remotes.get(link.remote_id)
        if remote is None or remote.link is not link:
            return
        del self._remotes[link.remote_id]
        if not self._closed:
            self._spawn(link.connection.close())
            self._publish(self._rooms.connection_closed(link.remote_id, self._now()))

    async def _failed(self, remote_id: str, remote: _Remote) -> None:
        await remote.connection.close()
        if self._remotes.get(remote_id) is remote:
            del self._remotes[remote_id]
            if not self._closed:
                self._publish(self._rooms.connection_closed(remote_id, self._now()))

    def _drop(self, remote_id: str, reason: str) -> None:
        """Give up whatever we have with ``remote_id``: a newer connection replaces it."""
        remote = self._remotes.pop(remote_id, None)
        if remote is None:
            return
        logger.debug("= %s drops its connection to %s: %s", self._local_id, remote_id, reason)
        if remote.task is not None:
            remote.task.cancel()  # a task cancelled before it ran closes nothing: see below
        if remote.link is not None and not remote.link.closed:
            remote.link.closed = True
            if self._listener is not None:
                self._listener.link_lost(remote.link, reason)
        self._spawn(remote.connection.close())  # idempotent in aiortc

    # -- signaling out --------------------------------------------------------------------------

    def _signal(self, remote_id: str, kind: str, sdp: str) -> None:
        payload = self._rooms.signal(remote_id, {"type": kind, "sdp": sdp}, time.time() * 1000)
        self._publish(payload)

    def _publish(self, payload: dict[str, Any] | None) -> None:
        if payload is None or self._closed:
            return
        data: object = payload if self._cipher is None else self._cipher.seal_payload(payload)
        self._spawn(self._send(data))

    async def _send(self, data: object) -> None:
        if not await self.signaling.publish(self.room, data):
            logger.info("! %s: signaling is down, a payload is lost", self._local_id)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
