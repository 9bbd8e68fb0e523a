"""Links through a real coturn relay on 127.0.0.1: long-term credentials, credentials from our
signaling server (use-auth-secret), wrong credentials, a relay that dies; and the ICE
configuration refusing what aiortc would silently ignore."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pycrdt
import pytest
from needs import require_found

from crdtsync import ConfigError, Peer
from crdtsync.errors import SyncTimeoutError
from crdtsync.protocol.signaling import TurnCredentials
from crdtsync.signaling.server import SignalingServer
from crdtsync.signaling.turn import TurnSettings
from crdtsync.testing import wait_converged
from crdtsync.testing.coturn import Coturn, turnserver_binary
from crdtsync.transport.ice_config import (
    IceServer,
    IceTransportPolicy,
    checked_ice_servers,
    ice_configuration,
    with_offered_turn,
)

TIMEOUT = 30.0
CLOSE_BOUND = 10.0  # a hang guard: aiortc alone blocks ~48 s per allocation of a dead relay
LOOPBACK = ("127.0.0.1",)
SECRET = "turn-test-secret"


@pytest.fixture
def coturn_installed() -> None:
    require_found(turnserver_binary)


@asynccontextmanager
async def relayed_pair(
    url: str,
    ice_servers: Sequence[IceServer] = (),
    policy: IceTransportPolicy = "relay",
) -> AsyncIterator[tuple[list[pycrdt.Doc[Any]], list[Peer]]]:
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc(), pycrdt.Doc()]
    async with AsyncExitStack() as stack:
        peers = [
            await stack.enter_async_context(
                Peer(
                    doc,
                    room="relayed",
                    signaling=url,
                    ice_servers=ice_servers,
                    ice_transport_policy=policy,
                    host_addresses=LOOPBACK,
                )
            )
            for doc in docs
        ]
        yield docs, peers


async def converge_and_check_relayed(docs: list[pycrdt.Doc[Any]], peers: list[Peer]) -> None:
    for peer in peers:
        await peer.wait_for_peers(1, timeout=TIMEOUT)
    for index, doc in enumerate(docs):
        doc.get("text", type=pycrdt.Text).insert(0, f"<{index}>")
    await wait_converged(docs, timeout=TIMEOUT)
    for peer, other in ((peers[0], peers[1]), (peers[1], peers[0])):
        stats = peer.link_stats()[other.id]
        assert stats.path is not None, stats
        assert stats.path.relayed, stats
        assert stats.path.local_type == "relay"
        assert stats.messages_sent > 0
        assert stats.bytes_received > 0
        assert stats.linked_for >= 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_relay_only_peers_link_through_coturn_with_long_term_credentials(
    coturn_installed: None, tmp_path: Path, transport: str
) -> None:
    async with (
        Coturn.start(users={"alice": "wonderland"}, log_dir=tmp_path) as turn,
        SignalingServer(port=0) as server,
        relayed_pair(server.url, [IceServer(turn.url_over(transport), "alice", "wonderland")]) as (
            docs,
            peers,
        ),
    ):
        await converge_and_check_relayed(docs, peers)


async def test_relay_only_peers_use_the_credentials_our_server_hands_out(
    coturn_installed: None, tmp_path: Path
) -> None:
    async with (
        Coturn.start(secret=SECRET, log_dir=tmp_path) as turn,
        SignalingServer(port=0, turn=TurnSettings([turn.url], SECRET, ttl=600)) as server,
        relayed_pair(server.url) as (docs, peers),  # no TURN server of their own
    ):
        await converge_and_check_relayed(docs, peers)


async def test_wrong_credentials_say_so_and_never_link(
    coturn_installed: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="crdtsync.transport.webrtc")
    async with (
        Coturn.start(users={"alice": "wonderland"}, log_dir=tmp_path) as turn,
        SignalingServer(port=0) as server,
    ):
        wrong = [IceServer(turn.url, "alice", "not-the-password")]
        stack = AsyncExitStack()
        _docs, peers = await stack.enter_async_context(relayed_pair(server.url, wrong))
        try:
            with pytest.raises(SyncTimeoutError):
                await peers[0].wait_for_peers(1, timeout=3.0)
            assert not peers[1].peers
        finally:
            async with asyncio.timeout(CLOSE_BOUND):
                await stack.aclose()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"TURN server {turn.url}" in line and "no relay candidate" in line for line in lines)


async def test_closing_after_the_relay_died_takes_seconds_not_minutes(
    coturn_installed: None, tmp_path: Path
) -> None:
    stack = AsyncExitStack()
    try:
        turn = await stack.enter_async_context(Coturn.start(secret=SECRET, log_dir=tmp_path))
        settings = TurnSettings([turn.url], SECRET)
        server = await stack.enter_async_context(SignalingServer(port=0, turn=settings))
        docs, peers = await stack.enter_async_context(relayed_pair(server.url))
        await converge_and_check_relayed(docs, peers)
        turn.process.kill()
        await turn.process.wait()
    finally:
        async with asyncio.timeout(CLOSE_BOUND):
            await stack.aclose()  # the peers first: their allocations cannot be deleted


async def test_links_that_may_go_direct_say_host_and_time_heartbeats() -> None:
    async with (
        SignalingServer(port=0) as server,
        relayed_pair(server.url, policy="all") as (_docs, peers),
    ):
        await peers[0].wait_for_peers(1, timeout=TIMEOUT)
        remote = peers[1].id
        # A quiet link pings after a second; the PONG times the round trip.
        await peers[0].wait_for(
            lambda: (
                remote in peers[0].link_stats()
                and peers[0].link_stats()[remote].round_trip_time is not None
            ),
            timeout=TIMEOUT,
            what="a heartbeat round trip",
        )
        stats = peers[0].link_stats()[remote]
        assert stats.path is not None
        assert not stats.path.relayed
        assert stats.path.local_type == "host"
        assert stats.path.local_address[0] == "127.0.0.1"
        assert stats.round_trip_time is not None
        assert stats.round_trip_time >= 0


async def test_relay_only_without_any_turn_server_fails_each_dial(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="crdtsync.transport.webrtc")
    async with SignalingServer(port=0) as server, relayed_pair(server.url) as (_, peers):
        with pytest.raises(SyncTimeoutError):
            await peers[0].wait_for_peers(1, timeout=1.0)
    assert any("no TURN server" in r.getMessage() for r in caplog.records)


# -- the configuration: what aiortc would ignore is refused -----------------------------------


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        (["stun:a.invalid", "stun:b.invalid"], "only the first STUN server"),
        (
            [IceServer("turn:a.invalid", "u", "p"), IceServer("turn:b.invalid", "u", "p")],
            "only the first TURN server",
        ),
        ([IceServer("turn:a.invalid?transport=tls", "u", "p")], "ignores turn: over tls"),
        ([IceServer("turns:a.invalid?transport=udp", "u", "p")], "ignores turns: over udp"),
        (["turn:a.invalid"], "needs a username and a credential"),
        (["http://a.invalid"], "must be a stun: or turn: URL"),
    ],
)
def test_what_aiortc_would_ignore_is_refused(servers: list[str | IceServer], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        checked_ice_servers(servers)
    with pytest.raises(ConfigError, match=message):
        Peer(pycrdt.Doc(), room="r", signaling="ws://127.0.0.1:1", ice_servers=servers)


def test_one_stun_and_one_turn_server_are_fine() -> None:
    servers = ["stun:a.invalid:3478", IceServer("turn:b.invalid:3478?transport=tcp", "u", "p")]
    configuration = ice_configuration(servers, "relay")
    assert [server.urls for server in configuration.iceServers or ()] == [
        "stun:a.invalid:3478",
        "turn:b.invalid:3478?transport=tcp",
    ]


def test_the_policy_must_be_all_or_relay() -> None:
    with pytest.raises(ConfigError, match="ice_transport_policy"):
        Peer(
            pycrdt.Doc(),
            room="r",
            signaling="ws://127.0.0.1:1",
            ice_transport_policy="direct",  # type: ignore[arg-type]
        )


def test_offered_turn_is_used_unless_we_have_our_own() -> None:
    offered = TurnCredentials(
        ("turn:t.invalid?transport=tls", "turn:t.invalid?transport=udp", "turn:t.invalid"),
        "1:p",
        "pw",
    )
    stun = IceServer("stun:s.invalid")
    servers, ignored = with_offered_turn((stun,), offered)
    # The first URL aiortc can use; the others are named as ignored.
    assert servers == (stun, IceServer("turn:t.invalid?transport=udp", "1:p", "pw"))
    assert ignored == ("turn:t.invalid?transport=tls", "turn:t.invalid")
    own = IceServer("turn:mine.invalid", "u", "p")
    assert with_offered_turn((own,), offered) == ((own,), offered.urls)
    assert with_offered_turn((stun,), None) == ((stun,), ())


async def test_ywebrtc_dialect_peers_link_relay_only_too(
    coturn_installed: None, tmp_path: Path
) -> None:
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc(), pycrdt.Doc()]
    async with (
        Coturn.start(users={"alice": "wonderland"}, log_dir=tmp_path) as turn,
        SignalingServer(port=0) as server,
        AsyncExitStack() as stack,
    ):
        peers = [
            await stack.enter_async_context(
                Peer(
                    doc,
                    room="relayed-yjs",
                    signaling=server.url,
                    dialect="y-webrtc",
                    ice_servers=[IceServer(turn.url, "alice", "wonderland")],
                    ice_transport_policy="relay",
                    host_addresses=LOOPBACK,
                )
            )
            for doc in docs
        ]
        await converge_and_check_relayed(docs, peers)


async def test_expired_credentials_from_the_server_are_not_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="crdtsync.transport.webrtc")
    # A ttl this short has expired by the time anyone dials (expiry is in whole seconds).
    settings = TurnSettings(["turn:127.0.0.1:9?transport=udp"], SECRET, ttl=0.001)
    async with (
        SignalingServer(port=0, turn=settings) as server,
        relayed_pair(server.url) as (_, peers),
    ):
        with pytest.raises(SyncTimeoutError):
            await peers[0].wait_for_peers(1, timeout=1.0)
    lines = [r.getMessage() for r in caplog.records]
    assert any("TURN credentials the signaling server gave at login expired" in x for x in lines)
