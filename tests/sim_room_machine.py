"""What the stateful room tests share: peers on a simulated network and a virtual clock,
the faults (partition, heal, crash, rejoin, time passing) and the teardown that heals
everything, brings every peer back and checks the end state.

A machine subclasses it with ``join`` (start the peer of a slot), ``healed`` (the end-state
checks) and rules of its own; hypothesis collects the rules here with them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from crdtsync import Peer
from crdtsync.testing import SimNetwork
from crdtsync.testing.virtual_clock import close_loop, new_loop


class SimRoomMachine(RuleBasedStateMachine):
    """Peers in slots (None: crashed, not rejoined yet) on ``network``, on a virtual clock."""

    advance_steps: tuple[float, ...] = (0.1, 1.0, 3.0)  # seconds the ``advance`` rule draws

    def __init__(self) -> None:
        super().__init__()
        self.loop = new_loop()
        self.network: SimNetwork | None = None
        self.peers: list[Peer | None] = []

    def join(self, index: int) -> None:
        """Start the peer of slot ``index`` (with what it held, after a crash)."""
        raise NotImplementedError

    def healed(self) -> None:
        """Check the end state, once the network is healed and every peer is back."""
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------

    def run(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def on_loop(self, action: Callable[[], None]) -> None:
        """Run a network fault inside the loop (it schedules notices on the loop)."""

        async def call() -> None:
            action()

        self.loop.run_until_complete(call())

    def live(self) -> list[tuple[int, Peer]]:
        return [(index, peer) for index, peer in enumerate(self.peers) if peer is not None]

    def sim(self) -> SimNetwork:
        assert self.network is not None, "the machine has not started"
        return self.network

    # -- faults -------------------------------------------------------------------------------

    @rule(data=st.data())
    def partition(self, data: st.DataObject) -> None:
        network = self.sim()
        ids = sorted(peer.id for _, peer in self.live())
        group = data.draw(st.sets(st.sampled_from(ids)), label="group") if ids else set()
        self.on_loop(lambda: network.partition(group))

    @rule()
    def heal(self) -> None:
        self.on_loop(self.sim().heal)

    @precondition(lambda self: len(self.live()) > 1)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        network = self.sim()
        index, peer = data.draw(st.sampled_from(self.live()), label="peer")
        self.on_loop(lambda: network.crash(peer.id))
        self.loop.run_until_complete(peer.aclose())
        self.peers[index] = None

    @precondition(lambda self: None in self.peers)
    @rule(data=st.data())
    def rejoin(self, data: st.DataObject) -> None:
        self.join(data.draw(st.sampled_from([i for i, p in enumerate(self.peers) if p is None])))

    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        self.run(data.draw(st.sampled_from(self.advance_steps), label="seconds"))

    # -- the end ------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.network is not None:
                self.on_loop(self.network.heal)
                for index, peer in enumerate(self.peers):
                    if peer is None:
                        self.join(index)
                self.healed()
        finally:
            for _, peer in self.live():
                self.loop.run_until_complete(peer.aclose())
            leftovers = close_loop(self.loop)
            assert not leftovers, f"tasks left pending: {leftovers}"
