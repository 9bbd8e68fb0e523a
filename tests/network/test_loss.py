"""Sync over a lossy network: peer processes in a namespace of their own, where nftables drops
UDP at random or cuts it off (``crdtsync/netfault.py``). Needs root, ``ip`` and ``nft``:
without them these skip, and fail under ``CI=true``. Timings are printed, never asserted
(``crdtsync bench network`` measures them)."""

from __future__ import annotations

import pytest
from needs import require_found

from crdtsync import netfault
from crdtsync.bench.network import blackout_run, faulty_room, type_words, wait_converged

PEERS = 3
EDITS = 300  # per peer
TIMEOUT = 120.0  # seconds to converge at 30% loss on a busy machine


@pytest.mark.parametrize("loss", [10, 30])
async def test_three_peers_typing_converge_under_random_udp_loss(loss: int) -> None:
    require_found(netfault.check)
    with netfault.FaultyNetwork() as net:
        async with faulty_room(net, PEERS) as room:
            net.loss(loss)
            words = await type_words(room, EDITS, "w")
            text = await wait_converged(room, words, timeout=TIMEOUT)
            assert sorted(text.split()) == sorted(words)
            print(f"{loss}% loss: {net.udp_bytes()} UDP bytes on the wire")


async def test_links_come_back_after_a_20_s_udp_blackout_and_edits_meanwhile_merge() -> None:
    """The links drop after the dead-peer timeout, every side edits, the network heals: all
    links return and the replicas are equal (``blackout_run`` waits on each, or raises)."""
    require_found(netfault.check)
    result = await blackout_run(20.0, peers=PEERS, timeout=TIMEOUT)
    print(
        f"dropped {result.dropped_after:.2f} s into the blackout; after the heal, links back "
        f"in {result.relinked_after:.2f} s, replicas equal in {result.converged_after:.2f} s"
    )
