"""The public API, exactly as the README shows it, on the real event loop."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pycrdt
import pytest

from crdtsync import ConfigError, LocalProtocolError, Peer
from crdtsync.protocol.link import LinkSettings
from crdtsync.signaling.identity import Identity
from crdtsync.testing import SimNetwork, converged, wait_converged


async def test_readme_contract() -> None:
    net = SimNetwork(seed=7, latency=0.005, jitter=0.005)
    docs = [pycrdt.Doc() for _ in range(4)]
    peers = [Peer(doc, room="notes", network=net) for doc in docs]
    for peer in peers:
        await peer.start()
    try:
        for peer in peers:
            await peer.wait_for_peers(3, timeout=10)
            await peer.wait_synced(timeout=10)
        first = peers[0]
        assert isinstance(first.id, str)
        assert len({peer.id for peer in peers}) == 4
        assert first.peers == frozenset(peer.id for peer in peers[1:])
        assert isinstance(first.awareness, pycrdt.Awareness)

        net.partition({first.id}, {peer.id for peer in peers[1:]})
        docs[0]["text"] = pycrdt.Text("alone")
        docs[1]["other"] = pycrdt.Map({"k": "v"})
        await wait_converged(docs[1:], timeout=5)
        assert not converged(docs)
        net.heal()
        await wait_converged(docs, timeout=10)
        assert str(docs[3].get("text", type=pycrdt.Text)) == "alone"
    finally:
        for peer in peers:
            await peer.aclose()
        for peer in peers:
            await peer.aclose()  # idempotent


async def test_peers_in_other_rooms_see_nothing() -> None:
    net = SimNetwork(seed=1)
    a, b, c = pycrdt.Doc(), pycrdt.Doc(), pycrdt.Doc()
    async with (
        Peer(a, room="one", network=net) as pa,
        Peer(b, room="one", network=net) as pb,
        Peer(c, room="two", network=net) as pc,
    ):
        await pa.wait_for_peers(1, timeout=5)
        a["text"] = pycrdt.Text("secret")
        await wait_converged([a, b], timeout=5)
        assert pc.peers == frozenset()
        assert pb.peers == {pa.id}
        assert "text" not in list(c.keys())


async def test_send_now_hands_edits_to_the_links_before_the_tick_ends() -> None:
    net = SimNetwork(seed=3)
    a, b = pycrdt.Doc(), pycrdt.Doc()
    async with Peer(a, room="now", network=net) as pa, Peer(b, room="now", network=net) as pb:
        await pa.wait_for_peers(1, timeout=5)
        await pb.wait_synced(timeout=5)
        text = a.get("text", type=pycrdt.Text)
        for edit in ("first", " second"):  # the second inside the batching window
            sent = pa.bytes_sent
            text += edit
            assert pa.bytes_sent == sent  # queued for the end of this tick
            pa.send_now()
            assert pa.bytes_sent > sent  # on the link already
        await wait_converged([a, b], timeout=5)
        assert str(b.get("text", type=pycrdt.Text)) == "first second"


def test_bad_arguments_are_config_errors() -> None:
    doc = pycrdt.Doc()
    with pytest.raises(ConfigError, match="exactly one of network"):
        Peer(doc, room="x")
    with pytest.raises(ConfigError, match="room"):
        Peer(doc, room="", network=SimNetwork())
    with pytest.raises(ConfigError, match="max_conns"):
        Peer(doc, room="x", network=SimNetwork(), max_conns=0)
    with pytest.raises(ConfigError, match="latency"):
        SimNetwork(latency=-1)


def test_ywebrtc_dialect_refuses_what_yjs_peers_cannot_have() -> None:
    doc, url = pycrdt.Doc(), "ws://127.0.0.1:1"
    with pytest.raises(ConfigError, match="dialect must be one of"):
        Peer(doc, room="x", signaling=url, dialect="y-websocket")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="identity="):
        Peer(doc, room="x", signaling=url, dialect="y-webrtc", identity=Identity())
    with pytest.raises(ConfigError, match="link_settings="):
        Peer(doc, room="x", signaling=url, dialect="y-webrtc", link_settings=LinkSettings())
    with pytest.raises(ConfigError, match="needs signaling="):
        Peer(doc, room="x", network=SimNetwork(), dialect="y-webrtc")
    with pytest.raises(ConfigError, match="password"):
        Peer(doc, room="x", signaling=url, dialect="y-webrtc", password="")
    peer = Peer(doc, room="x", signaling=url, dialect="y-webrtc", token="t&k")
    assert len(peer.id) == 36  # a random UUID per room, as y-webrtc peers expect


async def test_start_twice_is_misuse() -> None:
    async with Peer(pycrdt.Doc(), room="x", network=SimNetwork()) as peer:
        with pytest.raises(LocalProtocolError, match="already started"):
            await peer.start()


async def test_pytest_plugin_fixtures(
    sim_peers: Callable[..., AbstractAsyncContextManager[list[Peer]]], sim_network: SimNetwork
) -> None:
    async with sim_peers(3) as peers:
        assert all(len(peer.peers) == 2 for peer in peers)
        peers[0].doc()["text"] = pycrdt.Text("from the fixture")
        await wait_converged([peer.doc() for peer in peers], timeout=5)
    assert sim_network.messages_delivered > 0


def test_failure_report_names_the_seed(pytester: Any) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        def test_fails(sim_network):
            assert sim_network.seed == 41
        """
    )
    result = pytester.runpytest("--crdtsync-seed", "42", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*sim_network seed: 42 (replay with --crdtsync-seed 42)*"])
