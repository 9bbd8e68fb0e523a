"""Servers sharing rooms through a real redis-server: membership, relay, caps, outages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from needs import require_program
from probes import health, scrape, value
from test_server import TIMEOUT, hello, receive, send
from test_server_ywebrtc import closed_with, get, open_, put, settle
from websockets.asyncio.client import ClientConnection

from crdtsync.errors import ConfigError
from crdtsync.protocol.signaling import (
    Error,
    Join,
    Joined,
    PeerJoined,
    PeerLeft,
    Signal,
    SignalingMessage,
)
from crdtsync.protocol.ywebrtc_signaling import Error as TopicError
from crdtsync.protocol.ywebrtc_signaling import Publish
from crdtsync.signaling.backplane import BackplaneSettings
from crdtsync.signaling.identity import Identity
from crdtsync.signaling.router import SignalingSettings
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing.redis_server import RedisServer

# Short seats and refreshes: a test sees a merge or a dead seat within a second or two.
FAST = BackplaneSettings(seat_ttl=1.5, refresh_interval=0.25, timeout=0.5, retry_interval=0.2)


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    require_program("redis-server", "redis-server")
    server = await RedisServer.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def servers(
    redis: RedisServer, count: int, settings: SignalingSettings | None = None
) -> AsyncIterator[list[SignalingServer]]:
    started = [
        SignalingServer(port=0, redis=redis.url, backplane=FAST, settings=settings)
        for _ in range(count)
    ]
    try:
        for server in started:
            await server.start()
            assert server.metrics.redis_state == "connected"
        yield started
    finally:
        for server in started:
            await server.aclose()


async def join(url: str, room: str = "notes") -> tuple[ClientConnection, str, SignalingMessage]:
    """A native client logged in at ``url``; its answer to joining ``room``."""
    ws, peer_id = await hello(url)
    await send(ws, Join(room, None))
    return ws, peer_id, await receive(ws)


async def until(ws: ClientConnection, *wanted: SignalingMessage) -> None:
    """Read ``ws`` until each of ``wanted`` has arrived, in any order (others may come too)."""
    missing = set(wanted)
    async with asyncio.timeout(TIMEOUT):
        while missing:
            message = await receive(ws)
            missing.discard(message)


async def test_peers_on_two_servers_share_a_room_and_signal(redis: RedisServer) -> None:
    async with servers(redis, 2) as (one, two):
        alice, alice_id, joined = await join(one.url)
        assert joined == Joined("notes", frozenset())
        bob, bob_id, joined = await join(two.url)
        assert joined == Joined("notes", frozenset({alice_id}))  # alice is on the other server
        await until(alice, PeerJoined("notes", bob_id))

        await send(alice, Signal("notes", bob_id, b"offer"))
        assert await receive(bob) == Signal("notes", alice_id, b"offer")
        await send(bob, Signal("notes", alice_id, b"answer"))
        assert await receive(alice) == Signal("notes", bob_id, b"answer")

        await bob.close()
        await until(alice, PeerLeft("notes", bob_id))
        await alice.close()


async def test_a_room_full_on_one_server_is_full_on_all(redis: RedisServer) -> None:
    settings = SignalingSettings(max_peers_per_room=2)
    async with servers(redis, 2, settings) as (one, two):
        alice, _, _ = await join(one.url)
        bob, bob_id, _ = await join(two.url)
        for url in (one.url, two.url):
            carol, _, answer = await join(url)
            assert isinstance(answer, Error), answer
            assert answer.code == "room-full"
            await carol.close()
        await bob.close()  # a seat is free again: on either server
        await until(alice, PeerLeft("notes", bob_id))  # told after his seat was freed
        dave, _, answer = await join(one.url)
        assert isinstance(answer, Joined), answer
        for ws in (alice, dave):
            await ws.close()


async def test_a_dead_servers_peers_leave_within_seconds(redis: RedisServer) -> None:
    async with servers(redis, 1) as (one,):
        alice, alice_id, _ = await join(one.url)
        # A server that dies without a word: its seat is never released, only not renewed.
        dead = SignalingServer(port=0, redis=redis.url, backplane=FAST)
        await dead.start()
        bob, bob_id, _ = await join(dead.url)
        await until(alice, PeerJoined("notes", bob_id))
        assert dead.backplane is not None
        await dead.backplane.aclose()  # stops renewing; its seats stay in Redis until expiry
        await until(alice, PeerLeft("notes", bob_id))
        await bob.close()
        await dead.aclose()
        await alice.close()
        assert alice_id in one.router.rooms["notes"]


async def test_rooms_stay_local_while_redis_is_down_and_merge_after(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with servers(redis, 2) as (one, two):
        alice, alice_id, _ = await join(one.url)
        bob, bob_id, _ = await join(two.url)
        await until(alice, PeerJoined("notes", bob_id))

        await redis.kill()
        for server in (one, two):
            assert server.backplane is not None
            await server.backplane.wait_state("down", timeout=TIMEOUT)
        assert "rooms are local to this server" in caplog.text
        status, body = await health(one.url)  # still serving: 200, and it says why
        assert (status, body["redis"]) == (200, "down")
        assert value(await scrape(one.url), "crdtsync_signaling_redis_errors_total") >= 1
        await until(alice, PeerLeft("notes", bob_id))  # bob is out of reach for now
        carol, carol_id, joined = await join(one.url)  # the room still works on each server
        assert joined == Joined("notes", frozenset({alice_id}))
        await until(alice, PeerJoined("notes", carol_id))

        await redis.restart()  # empty: every seat comes back from the servers
        for server in (one, two):
            assert server.backplane is not None
            await server.backplane.wait_state("connected", timeout=TIMEOUT)
        await until(alice, PeerJoined("notes", bob_id))
        await until(bob, PeerJoined("notes", alice_id), PeerJoined("notes", carol_id))
        assert (await health(two.url))[1]["redis"] == "connected"
        await send(bob, Signal("notes", carol_id, b"hello after the outage"))
        await until(carol, Signal("notes", bob_id, b"hello after the outage"))
        for ws in (alice, bob, carol):
            await ws.close()


async def test_ywebrtc_topics_span_servers(redis: RedisServer) -> None:
    async with servers(redis, 2) as (one, two):
        first, second = await open_(one.url, "room"), await open_(two.url, "room")
        bystander = await open_(two.url, "room")
        # Seated here (a pong can come before the seat is granted) and known over there.
        await one.wait_until(lambda: len(one.topics.topics.get("room", ())) == 1, timeout=TIMEOUT)
        await two.wait_until(lambda: len(two.topics.topics.get("room", ())) == 2, timeout=TIMEOUT)
        for server in (one, two):
            await server.wait_until(
                lambda server=server: server.topics.has_members_elsewhere("room"), timeout=TIMEOUT
            )

        announce = {"type": "announce", "from": "first"}
        await put(first, Publish("room", announce))
        for ws in (second, bystander):
            message = await get(ws)
            assert isinstance(message, Publish)
            assert message.data == announce
        await put(second, Publish("room", {"type": "announce", "from": "second"}))
        for ws in (first, bystander):
            assert isinstance(await get(ws), Publish)
        # A plaintext signal goes to the connection that announced its `to`, on any server.
        signal = {"type": "signal", "from": "first", "to": "second", "signal": {"sdp": "x"}}
        await put(first, Publish("room", signal))
        message = await get(second)
        assert isinstance(message, Publish)
        assert message.data == signal
        await settle(bystander)  # nothing for the bystander before its pong
        for ws in (first, second, bystander):
            await ws.close()


async def test_a_full_ywebrtc_topic_is_full_on_every_server(redis: RedisServer) -> None:
    settings = SignalingSettings(max_peers_per_room=1)
    async with servers(redis, 2, settings) as (one, two):
        first = await open_(one.url, "room")
        await one.wait_until(lambda: "room" in one.topics.topics, timeout=TIMEOUT)
        second = await open_(two.url, "room")  # held at once, undone when the claim fails
        refusal = await get(second)
        assert isinstance(refusal, TopicError)
        assert refusal.code == "room-full"
        await two.wait_until(lambda: "room" not in two.topics.topics, timeout=TIMEOUT)
        for ws in (first, second):
            await ws.close()


async def test_a_peer_that_moved_servers_loses_its_old_connection(redis: RedisServer) -> None:
    async with servers(redis, 2) as (one, two):
        alice, alice_id, _ = await join(one.url)
        bob_identity = Identity()
        old, bob_id = await hello(one.url, bob_identity)
        await send(old, Join("notes", None))
        await until(alice, PeerJoined("notes", bob_id))
        # Bob is back, on the other server, before the first noticed he left.
        new, _ = await hello(two.url, bob_identity)
        await send(new, Join("notes", None))
        assert await closed_with(old) == 4000  # replaced: signals stop going there
        await until(alice, PeerLeft("notes", bob_id), PeerJoined("notes", bob_id))
        await send(alice, Signal("notes", bob_id, b"to the new one"))
        await until(new, Signal("notes", alice_id, b"to the new one"))
        for ws in (alice, new):
            await ws.close()


async def test_a_server_started_while_redis_is_down_serves_and_joins_it_later(
    redis: RedisServer,
) -> None:
    await redis.kill()
    async with SignalingServer(port=0, redis=redis.url, backplane=FAST) as server:
        assert server.metrics.redis_state == "down"  # it serves anyway, locally
        alice, alice_id, joined = await join(server.url)
        assert joined == Joined("notes", frozenset())
        await redis.restart()
        assert server.backplane is not None
        await server.backplane.wait_state("connected", timeout=TIMEOUT)
        async with servers(redis, 1) as (other,):  # its seat was written once Redis was back
            bob, _, joined = await join(other.url)
            assert joined == Joined("notes", frozenset({alice_id}))
            await bob.close()
        await alice.close()


def test_a_bad_redis_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Redis URL"):
        SignalingServer(port=0, redis="http://127.0.0.1:1/0")
