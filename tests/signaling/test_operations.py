"""/healthz and /metrics on the signaling server's own port, read as an operator's tools do."""

from __future__ import annotations

import pytest
from probes import health, http_get, scrape, value
from test_server import hello, receive, send
from test_server_ywebrtc import announce, get, open_, put, settle
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from crdtsync.errors import ConfigError
from crdtsync.protocol.signaling import Error, Join, Joined, PeerJoined, Signal
from crdtsync.protocol.ywebrtc_signaling import Publish
from crdtsync.signaling.router import SignalingSettings
from crdtsync.signaling.server import SignalingServer

JOINS = "crdtsync_signaling_joins_total"
RELAYED = "crdtsync_signaling_relayed_messages_total"
REFUSALS = "crdtsync_signaling_refusals_total"
LATENCY = "crdtsync_signaling_relay_latency_seconds"


async def test_metrics_move_as_clients_join_relay_and_are_refused() -> None:
    async with SignalingServer() as server, SignalingServer() as other:
        before = await scrape(server.url)
        assert value(before, "crdtsync_signaling_connections") == 0
        assert value(before, JOINS, protocol="crdtsync") == 0
        assert value(before, f"{LATENCY}_count") == 0

        alice, alice_id = await hello(server.url)
        bob, bob_id = await hello(server.url)
        await send(alice, Join("notes"))
        assert await receive(alice) == Joined("notes", frozenset())
        await send(bob, Join("notes"))
        assert await receive(bob) == Joined("notes", frozenset({alice_id}))
        assert await receive(alice) == PeerJoined("notes", bob_id)
        await send(bob, Signal("notes", alice_id, b"sdp offer"))
        assert await receive(alice) == Signal("notes", bob_id, b"sdp offer")
        await send(bob, Join("notes"))
        refusal = await receive(bob)
        assert isinstance(refusal, Error)
        assert refusal.code == "already-joined"

        a, b = await open_(server.url, "topic"), await open_(server.url, "topic")
        await settle(a, b)
        await put(a, Publish("topic", announce("a")))
        assert await get(b) == Publish("topic", announce("a"), clients=2)

        after = await scrape(server.url)
        assert value(after, "crdtsync_signaling_connections") == 4  # not the scrape itself
        assert value(after, "crdtsync_signaling_rooms", protocol="crdtsync") == 1
        assert value(after, "crdtsync_signaling_rooms", protocol="y-webrtc") == 1
        assert value(after, JOINS, protocol="crdtsync") == 2
        assert value(after, JOINS, protocol="y-webrtc") == 2
        assert value(after, RELAYED, protocol="crdtsync", kind="signal") == 1
        assert value(after, RELAYED, protocol="y-webrtc", kind="announce") == 1
        assert value(after, REFUSALS, code="already-joined") == 1
        # Timed: the join notice to alice, the signal, the announce (not the replies).
        assert value(after, f"{LATENCY}_count") == 3
        assert value(after, f"{LATENCY}_bucket", le="+Inf") == 3

        # Another server in the same process counts on its own.
        elsewhere = await scrape(other.url)
        assert value(elsewhere, JOINS, protocol="crdtsync") == 0
        assert value(elsewhere, "crdtsync_signaling_connections") == 0
        for ws in (alice, bob, a, b):
            await ws.close()


async def test_refusals_at_accept_are_counted() -> None:
    settings = SignalingSettings(max_connections_per_address=1)
    async with SignalingServer(settings=settings) as server:
        first, _ = await hello(server.url)
        with pytest.raises(InvalidStatus, match="503"):
            await connect(server.url, open_timeout=10)
        await first.close()
        await server.wait_for_connection_count(0, timeout=10)
        samples = await scrape(server.url)
        assert value(samples, REFUSALS, code="address-full") == 1


async def test_healthz_reports_connections_rooms_and_the_backplane_state() -> None:
    async with SignalingServer() as server:
        assert await health(server.url) == (
            200,
            {"status": "ok", "connections": 0, "rooms": 0, "redis": "disabled"},
        )
        alice, _ = await hello(server.url)
        await send(alice, Join("notes"))
        assert isinstance(await receive(alice), Joined)
        status, answer = await health(server.url)
        assert (status, answer["connections"], answer["rooms"]) == (200, 1, 1)

        # What the backplane reports: a Redis outage is named, and the server stays ready.
        server.metrics.redis_state = "connected"
        assert (await health(server.url))[1]["redis"] == "connected"
        server.metrics.redis_state = "down"
        server.metrics.redis_errors.inc()
        server.metrics.redis_errors.inc()
        status, answer = await health(server.url)
        assert (status, answer["status"], answer["redis"]) == (200, "ok", "down")
        samples = await scrape(server.url)
        redis = "crdtsync_signaling_redis"
        assert value(samples, redis, crdtsync_signaling_redis="down") == 1
        assert value(samples, redis, crdtsync_signaling_redis="connected") == 0
        assert value(samples, "crdtsync_signaling_redis_errors_total") == 2
        with pytest.raises(ConfigError, match="redis_state must be one of"):
            server.metrics.redis_state = "flaky"  # type: ignore[assignment]
        await alice.close()


async def test_other_paths_still_upgrade_and_plain_gets_are_refused() -> None:
    async with SignalingServer() as server:
        status, _, _ = await http_get(server.url, "/")
        assert status == 426  # websockets: a plain GET that is no upgrade
        ws, _ = await hello(server.url.rstrip("/") + "/some/room?token=x")
        await ws.close()


def test_a_server_not_yet_listening_is_not_ready() -> None:
    assert SignalingServer().metrics.health() == (
        503,
        {"status": "starting", "connections": 0, "rooms": 0, "redis": "disabled"},
    )
