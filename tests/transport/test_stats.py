"""``peer.link_stats()`` on the simulated network: per link traffic, age and heartbeat round
trip (the path, which needs ICE, is None here; real paths: test_turn_relays.py)."""

from __future__ import annotations

import pycrdt

from crdtsync import Peer
from crdtsync.testing import SimNetwork
from crdtsync.transport.stats import CandidatePath

TIMEOUT = 10.0


async def test_each_link_counts_its_traffic_and_times_its_heartbeats() -> None:
    net = SimNetwork(seed=13, latency=0.002)
    async with (
        Peer(pycrdt.Doc(), room="stats", network=net) as alice,
        Peer(pycrdt.Doc(), room="stats", network=net) as bob,
    ):
        await alice.wait_for_peers(1, timeout=TIMEOUT)
        await bob.wait_for_peers(1, timeout=TIMEOUT)
        assert set(alice.link_stats()) == {bob.id}
        # A quiet link pings after a second; the PONG times the round trip.
        await alice.wait_for(
            lambda: alice.link_stats()[bob.id].round_trip_time is not None,
            timeout=TIMEOUT,
            what="a heartbeat round trip",
        )
        stats = alice.link_stats()[bob.id]
        assert stats.remote_id == bob.id
        assert stats.path is None  # no ICE on the simulated network
        assert stats.round_trip_time is not None
        assert stats.round_trip_time > 0
        assert stats.linked_for > 0
        assert stats.messages_sent > 0
        # What one side sent is what the other receives, message for message, byte for byte.
        await bob.wait_for(
            lambda: _delivered(alice, bob), timeout=TIMEOUT, what="alice's messages, all received"
        )
        assert sum(s.bytes_sent for s in alice.link_stats().values()) == alice.bytes_sent


def _delivered(sender: Peer, receiver: Peer) -> bool:
    sent, received = sender.link_stats()[receiver.id], receiver.link_stats()[sender.id]
    return (sent.messages_sent, sent.bytes_sent) == (
        received.messages_received,
        received.bytes_received,
    )


def test_a_path_through_a_relay_says_so() -> None:
    relayed = CandidatePath("relay", ("10.0.1.1", 50100), "prflx", ("10.0.1.1", 61412))
    direct = CandidatePath("host", ("127.0.0.1", 40000), "host", ("127.0.0.1", 40001))
    assert relayed.relayed
    assert not direct.relayed
    assert str(relayed) == "relay 10.0.1.1:50100 -> prflx 10.0.1.1:61412"
