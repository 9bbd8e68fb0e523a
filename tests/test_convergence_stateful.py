"""Random edits, partitions, heals, dropped links, crashes and rejoins: after healing, all
replicas converge.

A hypothesis state machine drives 2-8 simulated peers on a virtual clock, so one example
replays exactly from the rules hypothesis prints (the network seed is the first of them).
"""

from __future__ import annotations

import pycrdt
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule
from sim_room_machine import SimRoomMachine

from crdtsync import Peer
from crdtsync.testing import SimNetwork, doc_version, wait_converged

ROOM = "stateful"


class MeshMachine(SimRoomMachine):
    advance_steps = (0.1, 1.0, 3.0, 8.0)

    def __init__(self) -> None:
        super().__init__()
        self.docs: list[pycrdt.Doc] = []
        self.max_conns = 20

    def join(self, index: int) -> None:
        peer = Peer(self.docs[index], room=ROOM, network=self.sim(), max_conns=self.max_conns)
        self.loop.run_until_complete(peer.start())
        self.peers[index] = peer

    def healed(self) -> None:
        self.loop.run_until_complete(wait_converged(self.docs, timeout=120.0))
        assert len({doc_version(doc) for doc in self.docs}) == 1

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
    def drop_link(self, data: st.DataObject) -> None:
        """A link breaks, what is in flight on it lost: neighbour lists go stale. (Peers are
        drawn by index, not from the links they hold: those vary from run to run.)"""
        network = self.sim()
        last = len(self.peers) - 1
        first, second = (self.peers[data.draw(st.integers(0, last))] for _ in range(2))
        if first is not None and second is not None and second.id in first.peers:
            self.on_loop(lambda: network.drop_link(first.id, second.id))

    @invariant()
    def no_peer_links_itself_or_twice(self) -> None:
        for _, peer in self.live():
            assert peer.id not in peer.peers


TestMeshConvergence = MeshMachine.TestCase
