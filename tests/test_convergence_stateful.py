"""Random edits, partitions, heals, dropped links, crashes and rejoins: after healing, all
replicas converge.

A hypothesis state machine drives 2-8 simulated peers on a virtual clock, so one example
replays exactly from the rules hypothesis prints (the network seed is the first of them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pycrdt
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from crdtsync import Peer
from crdtsync.testing import SimNetwork, doc_version, wait_converged
from crdtsync.testing.virtual_clock import close_loop, new_loop

ROOM = "stateful"


class MeshMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = new_loop()
        self.network: SimNetwork | None = None
        self.docs: list[pycrdt.Doc] = []
        self.peers: list[Peer | None] = []  # None: crashed, not rejoined yet
        self.max_conns = 20

    # -- helpers ------------------------------------------------------------------------------

    def run(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def join(self, index: int) -> None:
        assert self.network is not None
        peer = Peer(self.docs[index], room=ROOM, network=self.network, max_conns=self.max_conns)
        self.loop.run_until_complete(peer.start())
        self.peers[index] = peer

    def on_loop(self, action: Callable[[], None]) -> None:
        """Run a network fault inside the loop (it schedules notices on the loop)."""

        async def call() -> None:
            action()

        self.loop.run_until_complete(call())

    def live(self) -> list[Peer]:
        return [peer for peer in self.peers if peer is not None]

    # -- rules ----------------------------------------------------------------------------------

    @initialize(
        seed=st.integers(0, 2**32 - 1),
        count=st.integers(2, 8),
        max_conns=st.sampled_from([2, 3, 20]),
    )
    def start(self, seed: int, count: int, max_conns: int) -> None:
        self.network = SimNetwork(seed=seed, latency=0.01, jitter=0.01)
        self.max_conns = max_conns
        self.docs = [pycrdt.Doc(client_id=index + 1) for index in range(count)]
        self.peers = [None] * count
        for index in range(count):
            self.join(index)

    @rule(data=st.data())
    def edit(self, data: st.DataObject) -> None:
        doc = self.docs[data.draw(st.integers(0, len(self.docs) - 1), label="peer")]
        kind = data.draw(st.sampled_from(["text", "map", "array"]), label="kind")
        if kind == "text":
            text = doc.get("text", type=pycrdt.Text)
            if len(text) and data.draw(st.booleans(), label="delete"):
                start = data.draw(st.integers(0, len(text) - 1))
                end = data.draw(st.integers(start + 1, min(len(text), start + 5)))
                del text[start:end]
            else:
                text.insert(
                    data.draw(st.integers(0, len(text))),
                    data.draw(st.text("abc", min_size=1, max_size=4)),
                )
        elif kind == "map":
            values = doc.get("map", type=pycrdt.Map)
            key = data.draw(st.sampled_from("kxyz"))
            if key in values and data.draw(st.booleans(), label="delete"):
                del values[key]
            else:
                values[key] = data.draw(st.integers(0, 99))
        else:
            array = doc.get("array", type=pycrdt.Array)
            if len(array) and data.draw(st.booleans(), label="delete"):
                del array[data.draw(st.integers(0, len(array) - 1))]
            else:
                array.insert(data.draw(st.integers(0, len(array))), data.draw(st.integers(0, 9)))
        self.run(data.draw(st.sampled_from([0.0, 0.005, 0.05, 0.5]), label="then wait"))

    @rule(data=st.data())
    def partition(self, data: st.DataObject) -> None:
        network = self.network
        assert network is not None
        ids = sorted(peer.id for peer in self.live())
        group = (
            data.draw(st.sets(st.sampled_from(ids), max_size=len(ids)), label="group")
            if ids
            else set()
        )
        self.on_loop(lambda: network.partition(group))

    @rule()
    def heal(self) -> None:
        network = self.network
        assert network is not None
        self.on_loop(network.heal)

    @rule(data=st.data())
    def drop_link(self, data: st.DataObject) -> None:
        """A link breaks, what is in flight on it lost: neighbour lists go stale. (Peers are
        drawn by index, not from the links they hold: those vary from run to run.)"""
        network = self.network
        assert network is not None
        last = len(self.peers) - 1
        first, second = (self.peers[data.draw(st.integers(0, last))] for _ in range(2))
        if first is not None and second is not None and second.id in first.peers:
            self.on_loop(lambda: network.drop_link(first.id, second.id))

    @precondition(lambda self: len(self.live()) > 1)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        assert self.network is not None
        index = data.draw(st.sampled_from([i for i, p in enumerate(self.peers) if p is not None]))
        peer = self.peers[index]
        assert peer is not None
        network = self.network
        self.on_loop(lambda: network.crash(peer.id))
        self.loop.run_until_complete(peer.aclose())
        self.peers[index] = None

    @precondition(lambda self: None in self.peers)
    @rule(data=st.data())
    def rejoin(self, data: st.DataObject) -> None:
        self.join(data.draw(st.sampled_from([i for i, p in enumerate(self.peers) if p is None])))

    @rule(seconds=st.sampled_from([0.1, 1.0, 3.0, 8.0]))
    def advance(self, seconds: float) -> None:
        self.run(seconds)

    @invariant()
    def no_peer_links_itself_or_twice(self) -> None:
        for peer in self.live():
            assert peer.id not in peer.peers

    def teardown(self) -> None:
        try:
            if self.network is not None:
                self.on_loop(self.network.heal)
                for index, peer in enumerate(self.peers):
                    if peer is None:
                        self.join(index)
                self.loop.run_until_complete(wait_converged(self.docs, timeout=120.0))
                versions = {doc_version(doc) for doc in self.docs}
                assert len(versions) == 1
        finally:
            for peer in self.live():
                self.loop.run_until_complete(peer.aclose())
            leftovers = close_loop(self.loop)
            assert not leftovers, f"tasks left pending: {leftovers}"


TestMeshConvergence = MeshMachine.TestCase
