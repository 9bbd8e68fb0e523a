"""The mesh over the simulated network, on a virtual clock: formation, relays, faults."""

from __future__ import annotations

import asyncio
import random

import pycrdt
import pytest

from crdtsync import Peer, SyncTimeoutError
from crdtsync.mesh import Mesh
from crdtsync.protocol.link import LinkSettings
from crdtsync.replica import Replica
from crdtsync.testing import SimNetwork, converged, sim_room, wait_converged
from crdtsync.testing.virtual_clock import run


def text_of(peer: Peer) -> str:
    return str(peer.doc().get("text", type=pycrdt.Text))


def type_in(peer: Peer, words: str) -> None:
    text = peer.doc().get("text", type=pycrdt.Text)
    text.insert(len(text), words)


def test_full_mesh_forms_and_converges() -> None:
    async def scenario() -> None:
        async with sim_room(SimNetwork(seed=1), 5) as peers:
            for peer in peers:
                assert peer.peers == {other.id for other in peers} - {peer.id}
            for index, peer in enumerate(peers):
                type_in(peer, f"<{index}>")
            await wait_converged([peer.doc() for peer in peers], timeout=5)
            assert all(f"<{index}>" in text_of(peers[0]) for index in range(5))

    run(scenario())


def test_full_mesh_relays_nothing() -> None:
    """In a full mesh an edit crosses each link once: no peer forwards it."""

    async def scenario() -> None:
        network = SimNetwork(seed=2, latency=0.01)
        async with sim_room(network, 4) as peers:
            await asyncio.sleep(0.5)  # LINKS announcements settle (virtual time)
            before = network.messages_delivered
            type_in(peers[0], "one edit")
            await wait_converged([peer.doc() for peer in peers], timeout=5)
            await asyncio.sleep(0.1)
            assert network.messages_delivered - before == 3

    run(scenario())


def test_partial_mesh_of_twelve_converges_through_relays() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=3, latency=0.01, jitter=0.01)
        async with sim_room(network, 12, max_conns=3) as peers:
            degrees = [len(peer.peers) for peer in peers]
            assert max(degrees) < 11, degrees  # really partial
            for index, peer in enumerate(peers):
                type_in(peer, f"[{index}]")
            await wait_converged([peer.doc() for peer in peers], timeout=10)
            assert all(f"[{index}]" in text_of(peers[5]) for index in range(12))

    run(scenario())


def test_crashed_peer_is_dropped_within_seconds() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=4)
        async with sim_room(network, 3) as (alice, bob, carol):
            loop = asyncio.get_running_loop()
            crashed_at = loop.time()
            network.crash(carol.id)
            await alice.wait_for_peers(1, timeout=1)  # still linked to bob
            await alice.wait_for(lambda: carol.id not in alice.peers, timeout=10, what="drop")
            assert loop.time() - crashed_at <= 6.0  # dead_after 5 s + one heartbeat
            type_in(alice, "after the crash")
            await wait_converged([alice.doc(), bob.doc()], timeout=5)
            await carol.aclose()

    run(scenario())


def test_partition_then_heal_converges_and_relinks() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=5, latency=0.01)
        async with sim_room(network, 4) as peers:
            left, right = peers[:2], peers[2:]
            network.partition({p.id for p in left}, {p.id for p in right})
            for index, peer in enumerate(peers):
                type_in(peer, f"({index})")
            await wait_converged([p.doc() for p in left], timeout=5)
            await wait_converged([p.doc() for p in right], timeout=5)
            assert not converged([peer.doc() for peer in peers])
            await asyncio.sleep(10)  # both sides give up on the cut links
            assert right[0].id not in left[0].peers
            network.heal()
            await wait_converged([peer.doc() for peer in peers], timeout=20)
            for peer in peers:
                await peer.wait_for_peers(3, timeout=20)

    run(scenario())


def test_rejoin_after_crash_with_offline_edits() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=6)
        async with sim_room(network, 3) as (alice, bob, carol):
            network.crash(carol.id)
            await carol.aclose()
            type_in(carol, "typed while offline")  # the doc outlives its peer
            type_in(alice, "typed meanwhile")
            async with Peer(carol.doc(), room="room", network=network) as again:
                await again.wait_for_peers(2, timeout=10)
                await wait_converged([alice.doc(), bob.doc(), carol.doc()], timeout=10)
            assert "typed while offline" in text_of(bob)

    run(scenario())


def test_awareness_reaches_everyone_and_expires_for_the_crashed() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=7)
        async with sim_room(network, 3, presence_timeout=10.0) as (alice, bob, carol):
            alice.awareness.set_local_state({"name": "alice", "cursor": 3})
            await asyncio.sleep(0.1)
            client = alice.doc().client_id
            assert bob.awareness.states[client] == {"name": "alice", "cursor": 3}
            assert carol.awareness.states[client]["name"] == "alice"
            network.crash(alice.id)
            await asyncio.sleep(15)
            assert client not in bob.awareness.states
            await alice.aclose()

    run(scenario())


def test_waits_time_out_with_a_clear_error() -> None:
    async def scenario() -> None:
        async with sim_room(SimNetwork(seed=8), 1) as (alone,):
            with pytest.raises(SyncTimeoutError, match="2 linked peers not reached within 1"):
                await alone.wait_for_peers(2, timeout=1)

    run(scenario())


def test_glare_leaves_one_link() -> None:
    """Two peers that both dial each other end up with one link, the same one on both sides."""

    async def scenario() -> None:
        network = SimNetwork(seed=9)
        docs = [pycrdt.Doc(), pycrdt.Doc()]
        meshes = [Mesh(network.connector("room")) for _ in docs]
        for mesh, doc in zip(meshes, docs, strict=True):
            mesh.workspace.open_document(Replica(doc))
            await mesh.start()
        alice, bob = meshes
        bob.connector.dial(alice.local_id)  # the larger id dials too, against the rule: glare
        await asyncio.sleep(1)
        assert alice.peers == {bob.local_id}
        assert bob.peers == {alice.local_id}
        docs[1]["text"] = pycrdt.Text("still syncing")
        await wait_converged(docs, timeout=5)
        for mesh in meshes:
            await mesh.aclose()

    run(scenario())


def test_a_congested_link_holds_updates_and_merges_them() -> None:
    """A slow peer's link stops taking updates at the high-water mark; what waits goes as one."""
    settings = LinkSettings(send_buffer_high=8192, send_buffer_low=2048)
    edits, edit_size = 400, 256

    async def scenario() -> None:
        network = SimNetwork(seed=5, latency=0.01)
        # No batching window: each edit leaves in its own tick, as backpressure is the subject.
        async with sim_room(network, 2, link_settings=settings, batch_window=0) as (alice, bob):
            network.slow(bob.id, 1.0)
            before = network.messages_delivered
            most_queued, congested = 0, False
            for index in range(edits):
                type_in(alice, f"{index:04d}".ljust(edit_size, "."))
                await asyncio.sleep(0)  # one tick: the mesh sends (or holds) it
                most_queued = max(most_queued, network.queued_bytes(alice.id, bob.id))
                congested |= alice.congested == {bob.id}
            assert congested
            assert most_queued <= settings.send_buffer_high + 2 * edit_size
            await wait_converged([alice.doc(), bob.doc()], timeout=10)
            assert alice.congested == frozenset()
            assert len(text_of(bob)) == edits * edit_size
            # Each frame that got through before the mark, then the held ones as one.
            frames = network.messages_delivered - before
            assert frames < edits // 4, frames

    run(scenario())


def test_bytes_sent_are_received_or_still_on_their_way() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=6, latency=0.01)
        async with sim_room(network, 3) as peers:
            type_in(peers[0], "counted")
            await wait_converged([peer.doc() for peer in peers], timeout=5)
            sent = sum(peer.bytes_sent for peer in peers)
            received = sum(peer.bytes_received for peer in peers)
            in_flight = sum(
                network.queued_bytes(a.id, b.id) for a in peers for b in peers if a is not b
            )
            assert sent > len("counted") * 2  # the edit went to both others
            assert sent == received + in_flight

    run(scenario())


def test_a_burst_of_edits_leaves_merged_and_a_lone_edit_at_once() -> None:
    async def frames_for_burst(batch_window: float) -> int:
        network = SimNetwork(seed=9, latency=0.01)
        async with sim_room(network, 2, batch_window=batch_window) as (alice, bob):
            await asyncio.sleep(2 * batch_window)  # quiet: the window is closed (virtual time)
            type_in(alice, "lone")
            loop = asyncio.get_running_loop()
            sent_at = loop.time()
            await wait_converged([alice.doc(), bob.doc()], timeout=5)
            assert loop.time() - sent_at < 0.01 + 0.001  # one network latency, no window
            before = network.messages_delivered
            for index in range(50):  # one edit per tick, as fast as a script types
                type_in(alice, f"<{index}>")
                await asyncio.sleep(0)
            await wait_converged([alice.doc(), bob.doc()], timeout=5)
            return network.messages_delivered - before

    async def scenario() -> None:
        assert await frames_for_burst(0.0) >= 50
        assert await frames_for_burst(0.010) <= 3

    run(scenario())


def test_a_steady_stream_widens_the_window_and_a_pause_narrows_it_again() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=10, latency=0.01)
        async with sim_room(network, 2, batch_window=0.010) as (alice, bob):
            await asyncio.sleep(0.1)  # quiet (virtual time)
            before = network.messages_delivered
            for index in range(160):  # an edit every 5 ms for 0.8 s: a steady stream
                type_in(alice, f"<{index}>")
                await asyncio.sleep(0.005)
            await wait_converged([alice.doc(), bob.doc()], timeout=5)
            # Messages both ways: a window fixed at 10 ms takes ~160 here, a widening one ~25.
            assert network.messages_delivered - before <= 40
            await asyncio.sleep(0.2)  # a pause
            type_in(alice, "lone")
            loop = asyncio.get_running_loop()
            sent_at = loop.time()
            await wait_converged([alice.doc(), bob.doc()], timeout=5)
            assert loop.time() - sent_at < 0.01 + 0.001  # one network latency: no window

    run(scenario())


def test_a_newcomer_gets_the_document_once_not_once_per_peer() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=11, latency=0.01)
        holder = pycrdt.Doc()
        holder.get("text", type=pycrdt.Text).insert(0, "history " * 5000)
        size = len(holder.get_update())
        docs = [holder, *(pycrdt.Doc() for _ in range(3))]
        async with sim_room(network, docs=docs) as peers:
            newcomer = Peer(pycrdt.Doc(), room="room", network=network)
            async with newcomer:
                await newcomer.wait_for_peers(4, timeout=5)
                await newcomer.wait_synced(timeout=5)
                assert converged([newcomer.doc(), *(peer.doc() for peer in peers)])
                # Its first sync brings the document; the other links only what it lacked.
                assert size < newcomer.bytes_received < 1.5 * size

    run(scenario())


QUIET = LinkSettings(heartbeat_interval=3600.0, dead_after=7200.0)  # no pings in the counts


def test_an_edit_in_a_partial_mesh_costs_at_most_one_and_a_half_floods() -> None:
    """32 peers, max_conns 8: a lone edit costs at most 1.5 x (N - 1) messages, a spanning
    tree's flood and half again (the counts are deterministic in simulation)."""
    seed, edits = 7, 20

    async def scenario() -> None:
        network = SimNetwork(seed=seed, latency=0.005)
        async with sim_room(network, 32, max_conns=8, link_settings=QUIET) as peers:
            await asyncio.sleep(1.0)  # LINKS announcements and glare closes settle
            before = network.messages_delivered
            rng = random.Random(seed)
            for _ in range(edits):
                type_in(rng.choice(peers), rng.choice("abc"))
                await asyncio.sleep(0.05)  # longer than an edit takes to cross the room
            await wait_converged([peer.doc() for peer in peers], timeout=10)
            await asyncio.sleep(1.0)  # duplicates still on their way count too
            per_edit = (network.messages_delivered - before) / edits
            assert per_edit <= 1.5 * (len(peers) - 1), f"seed {seed}: {per_edit} per edit"
            assert all(len(text_of(peer)) == edits for peer in peers)

    run(scenario())


@pytest.mark.parametrize("seed", range(30))  # 0 and 29 lose edits without the resyncs
def test_links_dropping_and_opening_during_edits_lose_no_edit(seed: int) -> None:
    """Links drop (messages in flight lost) and redial while peers type, so neighbour lists
    are stale all along: relays that counted on a lost link ask for a resync, and every
    edit reaches every peer."""

    async def scenario() -> None:
        network = SimNetwork(seed=seed, latency=0.01, jitter=0.01)
        rng = random.Random(seed)
        async with sim_room(network, 14, max_conns=4) as peers:
            typed = 0
            for round_ in range(60):
                peer = rng.choice(peers)
                type_in(peer, rng.choice("xyz"))
                typed += 1
                if round_ % 3 == 0 and peer.peers:
                    network.drop_link(peer.id, rng.choice(sorted(peer.peers)))
                await asyncio.sleep(rng.choice([0.0, 0.005, 0.02]))
            docs = [peer.doc() for peer in peers]
            await wait_converged(docs, timeout=30)
            lengths = {len(text_of(peer)) for peer in peers}
            assert lengths == {typed}, f"seed {seed}: {lengths} characters, typed {typed}"

    run(scenario())
