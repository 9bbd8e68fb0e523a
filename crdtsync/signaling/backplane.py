"""Servers sharing rooms through Redis: the I/O half of ``cluster.py`` (redis-py, asyncio).

Seats: one sorted set per room, ``{prefix}:{kind}:seats:{room}``, of ``server|member`` scored
by expiry on Redis's own clock (so servers' clocks never matter). A claim is one script:
drop expired seats, refuse past the cap, add ours, announce it. Each server renews its seats
every ``refresh_interval`` and reads every room it serves back, so a dead server's members
are gone within ``seat_ttl`` plus a refresh, and a notice missed (or Redis restarted empty)
is mended at the next refresh. Channels: one per room (``{prefix}:{kind}:room:{room}``, join
and leave notices, y-webrtc fan-out), subscribed only by servers holding members there, so
Redis filters; one per server (``{prefix}:server:{id}``) for signals to its peers, so a
signal reaches one server, not a room's. No document data passes here, only signaling.
While Redis is unreachable every room is local (claims are granted here) and the server
retries each ``retry_interval``; once back its seats are renewed and the rooms merge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from crdtsync.signaling.cluster import Claim, ClusterCommand, Forward, Release
from crdtsync.signaling.limits import cut, short
from crdtsync.signaling.log_format import log_fields

__all__ = ["BackplaneSettings", "BackplaneState", "RedisBackplane"]

logger = logging.getLogger("crdtsync.signaling")

BackplaneState = Literal["connecting", "connected", "down"]
# What ends a Redis session (then rooms are local until it is back).
_REDIS_LOST = (RedisError, OSError, TimeoutError)

# KEYS[1] seats; ARGV: entry, ttl ms, limit, room channel, join notice. The seats, or nil
# when full. Its seat is renewed if the entry already holds one (a reconnect).
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return false
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
redis.call('PUBLISH', ARGV[4], ARGV[5])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS[1] seats; ARGV: ttl ms, our prefix ("server|"), our entries. Renews ours (re-adding
# any Redis lost), drops ours that are not listed and everyone's expired; returns the seats.
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ours = {}
for i = 3, #ARGV do ours[ARGV[i]] = true end
for _, entry in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(entry, 1, #ARGV[2]) == ARGV[2] and not ours[entry] then
    redis.call('ZREM', KEYS[1], entry)
  end
end
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[1]))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


@dataclass(frozen=True, slots=True)
class BackplaneSettings:
    """How servers share rooms; defaults keep a dead server's peers listed for at most ~4 s."""

    seat_ttl: float = 3.0  # a seat not renewed for this long is gone
    refresh_interval: float = 1.0  # seats renewed and rooms compared (well inside seat_ttl)
    timeout: float = 1.0  # each connect and command: past it, Redis counts as down
    retry_interval: float = 1.0  # between tries while Redis is down
    prefix: str = "crdtsync"  # keys and channels: several clusters may share one Redis


class _Core(Protocol):
    """What the backplane needs of a clustered core (``Router``, ``TopicRouter``)."""

    @property
    def rooms(self) -> dict[str, frozenset[str]]: ...
    def seat_granted(self, conn: int, room: str, elsewhere: Mapping[str, str]) -> None: ...
    def seat_refused(self, conn: int, room: str, now: float) -> None: ...
    def joined_elsewhere(self, room: str, member: str, server: str) -> None: ...
    def left_elsewhere(self, room: str, member: str, server: str) -> None: ...
    def members_elsewhere(self, room: str, members: Mapping[str, str]) -> None: ...
    def backplane_lost(self) -> None: ...


class _NativeCore(_Core, Protocol):
    def signal_from_elsewhere(self, room: str, sender: str, target: str, data: bytes) -> None: ...


class _TopicCore(_Core, Protocol):
    def publish_from_elsewhere(self, frame: str) -> None: ...


class RedisBackplane:
    """One server's link to the others through Redis; ``submit`` what the cores ask for."""

    def __init__(
        self,
        url: str,
        *,
        native: _NativeCore,
        topics: _TopicCore,
        on_change: Callable[[], None],
        settings: BackplaneSettings | None = None,
        on_error: Callable[[], None] | None = None,
        on_state: Callable[[BackplaneState], None] | None = None,
    ) -> None:
        """``on_change``: the cores were fed (dispatch their output); ``on_error``: a Redis
        call failed; ``on_state``: connecting, connected or down (for health and metrics)."""
        self.settings = settings or BackplaneSettings()
        self.server_id = secrets.token_hex(8)
        self.state: BackplaneState = "connecting"
        self._native = native
        self._topics = topics
        self._cores: dict[str, _Core] = {"n": native, "y": topics}
        self._on_change = on_change
        self._on_error = on_error
        self._on_state = on_state
        timeout = self.settings.timeout
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        options = self._redis.connection_pool.connection_kwargs
        # For logs: never the URL itself, which may hold a password.
        self.where = f"{options.get('host', '?')}:{options.get('port', '?')}/{options.get('db', 0)}"
        self._claim = self._redis.register_script(_CLAIM)
        self._refresh = self._redis.register_script(_REFRESH)
        self._queue: deque[tuple[str, ClusterCommand]] = deque()
        self._wake = asyncio.Event()
        self._state_changed = asyncio.Event()
        self._channels: dict[bytes, tuple[str, str]] = {}  # subscribed room channel -> kind, room
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect in the background; returns once connected, or once the first try failed
        (then the server serves its rooms locally and keeps trying)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="redis backplane")
        with contextlib.suppress(TimeoutError):
            await self.wait_state("connecting", reached=False, timeout=3 * self.settings.timeout)

    async def wait_state(
        self, state: BackplaneState, *, timeout: float, reached: bool = True
    ) -> None:
        """Until the state is (or, ``reached=False``, is no longer) ``state``; TimeoutError."""
        async with asyncio.timeout(timeout):
            while (self.state == state) != reached:
                self._state_changed.clear()
                await self._state_changed.wait()

    async def aclose(self) -> None:
        """Send what is queued (the seats of peers that just left), within ``timeout``; stop."""
        if self.state == "connected" and self._queue:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.timeout):
                    while self._queue and self.state == "connected":
                        self._state_changed.clear()
                        await self._state_changed.wait()
        task, self._task = self._task, None
        if task is not None:
            await _cancelled(task)
        with contextlib.suppress(*_REDIS_LOST):
            await self._redis.aclose()

    def submit(self, kind: Literal["n", "y"], commands: list[ClusterCommand]) -> None:
        """Commands from the core of ``kind`` ("n" native, "y" y-webrtc), in order."""
        self._queue.extend((kind, command) for command in commands)
        if self.state == "connected":
            self._wake.set()
        else:  # rooms are local: grant claims here, drop the rest (a refresh mends them)
            asyncio.get_running_loop().call_soon(self._serve_locally)

    # -- sessions -------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except _REDIS_LOST as exc:
                self._lost(exc)
            await asyncio.sleep(self.settings.retry_interval)

    async def _session(self) -> None:
        async with asyncio.timeout(self.settings.timeout):
            await self._redis.ping()
        self._pubsub = pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            async with asyncio.timeout(self.settings.timeout):
                await pubsub.subscribe(self._server_channel(self.server_id))
            self._channels.clear()
            await self._refresh_rooms()  # our seats back, the rooms merged
            logger.info(
                "= Redis at %s: rooms shared with other servers",
                self.where,
                extra=log_fields("redis-connected"),
            )
            self._set_state("connected")
            self._wake.set()
            await _first_failure(self._listen(pubsub), self._work(), self._keep_fresh())
        finally:
            self._pubsub = None
            with contextlib.suppress(*_REDIS_LOST):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _lost(self, exc: BaseException) -> None:
        if self._on_error is not None:
            self._on_error()
        if self.state != "down":
            logger.warning(
                "! Redis at %s unreachable (%s): rooms are local to this server until it is back",
                self.where,
                cut(f"{type(exc).__name__}: {exc}"),
                extra=log_fields("redis-down"),
            )
        self._set_state("down")
        self._channels.clear()
        for core in self._cores.values():
            core.backplane_lost()
        self._serve_locally()

    def _serve_locally(self) -> None:
        """Without Redis: queued claims are granted (the room is ours alone), the rest dropped."""
        if self.state == "connected":
            return
        while self._queue:
            kind, command = self._queue.popleft()
            if isinstance(command, Claim):
                self._cores[kind].seat_granted(command.conn, command.room, {})
        self._on_change()

    def _set_state(self, state: BackplaneState) -> None:
        self.state = state
        self._state_changed.set()
        if self._on_state is not None:
            self._on_state(state)

    # -- the three tasks of a session -----------------------------------------------------------

    async def _listen(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=self.settings.refresh_interval)
            if message is not None and message.get("type") == "message":
                self._received(message["channel"], message["data"])
                self._on_change()

    async def _work(self) -> None:
        """Send the queue in batches: one round trip for all that piled up meanwhile."""
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            batch = list(self._queue)
            # A claim's room is followed before the claim announces it (its notices follow).
            claimed = [(kind, c.room) for kind, c in batch if isinstance(c, Claim)]
            await self._subscribe({self._room_channel(*room): room for room in claimed})
            claims: list[tuple[int, str, Claim]] = []
            async with self._redis.pipeline(transaction=False) as pipe:
                for kind, command in batch:
                    if isinstance(command, Claim):
                        claims.append((len(pipe), kind, command))
                    await self._add_to(pipe, kind, command)
                async with asyncio.timeout(self.settings.timeout):
                    results = await pipe.execute()
            for _ in batch:
                self._queue.popleft()
            for index, kind, claim in claims:
                self._answer(kind, claim, results[index])
            self._state_changed.set()  # for aclose: the queue got shorter
            self._on_change()

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_interval)
            await self._refresh_rooms()

    # -- commands and notices -------------------------------------------------------------------

    async def _add_to(self, pipe: Pipeline, kind: str, command: ClusterCommand) -> None:
        """Queue ``command`` on ``pipe`` (a claim is one command there: its answer's place)."""
        ttl = int(self.settings.seat_ttl * 1000)
        if isinstance(command, Claim):
            notice = _pack(["join", self.server_id, command.member])
            keys = [self._seats_key(kind, command.room)]
            channel = self._room_channel(kind, command.room)
            args: list[str | int | bytes] = [self._entry(command.member), ttl, command.limit]
            args += [channel, notice]
            await self._claim(keys=keys, args=args, client=pipe)
        elif isinstance(command, Release):
            pipe.zrem(self._seats_key(kind, command.room), self._entry(command.member))
            notice = _pack(["leave", self.server_id, command.member])
            pipe.publish(self._room_channel(kind, command.room), notice)
        elif isinstance(command, Forward):
            signal = _pack(["signal", command.room, command.sender, command.target, command.data])
            pipe.publish(self._server_channel(command.server), signal)
        else:
            notice = _pack(["publish", self.server_id, command.frame])
            pipe.publish(self._room_channel(kind, command.room), notice)

    def _answer(self, kind: str, claim: Claim, seats: list[bytes] | None) -> None:
        core = self._cores[kind]
        if seats is None:
            logger.info(
                "! room %s is full across servers",
                short(claim.room),
                extra=log_fields("room-full", room=claim.room, code="room-full"),
            )
            core.seat_refused(claim.conn, claim.room, asyncio.get_running_loop().time())
        else:
            core.seat_granted(claim.conn, claim.room, self._elsewhere(seats))

    def _received(self, channel: bytes, data: bytes) -> None:
        try:
            notice = msgpack.unpackb(data, raw=False)
            if channel == self._server_channel(self.server_id):
                _, room, sender, target, payload = notice
                self._native.signal_from_elsewhere(room, sender, target, payload)
                return
            kind, room = self._channels[channel]
            what, server, body = notice
            if server == self.server_id:
                return  # our own notice, back from Redis
            if what == "join":
                self._cores[kind].joined_elsewhere(room, body, server)
            elif what == "leave":
                self._cores[kind].left_elsewhere(room, body, server)
            elif what == "publish" and kind == "y":
                self._topics.publish_from_elsewhere(body)
        except (KeyError, ValueError, TypeError, msgpack.UnpackException) as exc:
            # Only servers of our cluster write here; still, never crash on a notice.
            logger.warning(
                "! a backplane notice not understood: %s",
                cut(repr(exc)),
                extra=log_fields("bad-notice"),
            )

    async def _refresh_rooms(self) -> None:
        """Renew our seats, read every room we serve back, and follow only those rooms."""
        rooms = [
            (k, room, members)
            for k, core in self._cores.items()
            for room, members in core.rooms.items()
        ]
        wanted = {self._room_channel(k, room): (k, room) for k, room, _ in rooms}
        wanted.update(
            (self._room_channel(k, c.room), (k, c.room))
            for k, c in self._queue
            if isinstance(c, Claim)
        )
        await self._subscribe(wanted, unsubscribe=True)
        if not rooms:
            return
        ttl, ours = int(self.settings.seat_ttl * 1000), self._entry("")
        async with self._redis.pipeline(transaction=False) as pipe:
            for kind, room, members in rooms:
                entries = [self._entry(member) for member in sorted(members)]
                keys = [self._seats_key(kind, room)]
                await self._refresh(keys=keys, args=[ttl, ours, *entries], client=pipe)
            async with asyncio.timeout(self.settings.timeout):
                results = await pipe.execute()
        for (kind, room, _), seats in zip(rooms, results, strict=True):
            self._cores[kind].members_elsewhere(room, self._elsewhere(seats))
        self._on_change()

    async def _subscribe(
        self, wanted: dict[bytes, tuple[str, str]], *, unsubscribe: bool = False
    ) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        new = [channel for channel in wanted if channel not in self._channels]
        old = (
            [channel for channel in self._channels if channel not in wanted] if unsubscribe else []
        )
        async with asyncio.timeout(self.settings.timeout):
            if new:
                await pubsub.subscribe(*new)
            if old:
                await pubsub.unsubscribe(*old)
        for channel in old:
            del self._channels[channel]
        self._channels.update((channel, wanted[channel]) for channel in new)

    # -- names ----------------------------------------------------------------------------------

    def _elsewhere(self, seats: list[bytes]) -> dict[str, str]:
        """Seats (ascending expiry) as member -> server, ours left out; a member seated twice
        (it moved servers) counts at its newest."""
        members: dict[str, str] = {}
        for seat in seats:
            server, _, member = seat.decode("utf-8", "surrogatepass").partition("|")
            if server != self.server_id:
                members[member] = server
        return members

    def _entry(self, member: str) -> str:
        return f"{self.server_id}|{member}"

    def _seats_key(self, kind: str, room: str) -> bytes:
        return f"{self.settings.prefix}:{kind}:seats:{room}".encode("utf-8", "surrogatepass")

    def _room_channel(self, kind: str, room: str) -> bytes:
        return f"{self.settings.prefix}:{kind}:room:{room}".encode("utf-8", "surrogatepass")

    def _server_channel(self, server: str) -> bytes:
        return f"{self.settings.prefix}:server:{server}".encode()


def _pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


async def _first_failure(*jobs: Awaitable[None]) -> None:
    """Run ``jobs`` until one fails; cancel and await the rest; raise its exception."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        await _cancelled(*tasks)


async def _cancelled(*tasks: asyncio.Future[None]) -> None:
    """Cancel ``tasks`` and wait until each has ended. A cancellation that lands inside a
    Redis call can be lost there (the client cleans its connection up and carries on), so a
    task still running is cancelled again, each 0.1 s, until it ends; a cancellation of our
    own meanwhile waits for them too."""
    pending = {task for task in tasks if not task.done()}
    interrupted = False  # we were cancelled meanwhile: ours ends too, once theirs have
    while pending:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=0.1)
        except asyncio.CancelledError:
            interrupted = True
            pending = {task for task in pending if not task.done()}
    if interrupted:
        raise asyncio.CancelledError
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            logger.debug("= a backplane task ended with %r", task.exception())
