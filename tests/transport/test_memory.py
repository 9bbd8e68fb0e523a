"""The simulated network on its own: ordering, delays, faults and determinism."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from crdtsync.errors import TransportError
from crdtsync.testing.virtual_clock import run
from crdtsync.transport.base import Link
from crdtsync.transport.memory import SimConnector, SimNetwork


@dataclass
class Recorder:
    """A LinkListener that writes down what it hears, with the virtual time."""

    log: list[tuple[float, str, str]] = field(default_factory=list)
    links: dict[str, Link] = field(default_factory=dict)
    members: frozenset[str] = frozenset()
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _note(self, what: str, detail: str) -> None:
        self.log.append((asyncio.get_running_loop().time(), what, detail))
        self.changed.set()

    def members_changed(self, members: frozenset[str]) -> None:
        self.members = members
        self._note("members", ",".join(sorted(members)))

    def link_opened(self, link: Link) -> None:
        self.links[link.remote_id] = link
        self._note("opened", link.remote_id)

    def link_failed(self, remote_id: str, reason: str) -> None:
        self._note("failed", f"{remote_id}: {reason}")

    def data_received(self, link: Link, data: bytes) -> None:
        self._note("data", data.decode())

    def link_lost(self, link: Link, reason: str) -> None:
        self.links.pop(link.remote_id, None)
        self._note("lost", reason)

    async def until(self, what: str, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not any(entry[1] == what for entry in self.log):
                self.changed.clear()
                await self.changed.wait()


async def pair(network: SimNetwork) -> tuple[SimConnector, Recorder, SimConnector, Recorder]:
    a, b = network.connector("room"), network.connector("room")
    ra, rb = Recorder(), Recorder()
    await a.start(ra)
    await b.start(rb)
    a.dial(b.local_id)
    await ra.until("opened")
    await rb.until("opened")
    return a, ra, b, rb


def test_ids_are_given_and_members_announced() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=1, latency=0.01)
        a, ra, b, rb = await pair(network)
        assert (a.local_id, b.local_id) == ("sim-001", "sim-002")
        assert ra.members == {"sim-002"}
        assert rb.members == {"sim-001"}
        assert ra.links["sim-002"].initiator
        assert not rb.links["sim-001"].initiator
        await b.aclose()
        await ra.until("lost")
        await asyncio.sleep(0.05)
        assert ra.members == frozenset()
        await a.aclose()

    run(scenario())


def test_messages_arrive_in_order_despite_jitter() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=2, latency=0.01, jitter=0.05)
        a, ra, b, rb = await pair(network)
        for index in range(200):
            ra.links[b.local_id].send(str(index).encode())
        await asyncio.sleep(1)
        received = [detail for _, what, detail in rb.log if what == "data"]
        assert received == [str(index) for index in range(200)]
        assert network.messages_delivered == 200
        await a.aclose()
        await b.aclose()

    run(scenario())


def test_partition_holds_messages_until_heal() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=3, latency=0.01)
        a, ra, b, rb = await pair(network)
        network.partition({a.local_id})
        assert not network.reachable(a.local_id, b.local_id)
        ra.links[b.local_id].send(b"held")
        await asyncio.sleep(5)
        assert not any(what == "data" for _, what, _ in rb.log)
        network.heal()
        await rb.until("data")
        await a.aclose()
        await b.aclose()

    run(scenario())


def test_crash_is_silent_and_drop_link_is_not() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=4, latency=0.01)
        a, ra, b, rb = await pair(network)
        c = network.connector("room")
        rc = Recorder()
        await c.start(rc)
        a.dial(c.local_id)
        await rc.until("opened")
        network.drop_link(a.local_id, b.local_id)
        await ra.until("lost")
        await rb.until("lost")
        network.crash(c.local_id)
        ra.links[c.local_id].send(b"into the void")
        await asyncio.sleep(10)
        assert not any(what in ("data", "lost") for _, what, _ in rc.log)
        assert c.local_id in ra.links  # nobody told a: only silence (the mesh's heartbeat) tells
        assert c.local_id not in ra.members
        for connector in (a, b, c):
            await connector.aclose()

    run(scenario())


def test_dials_fail_for_absent_or_cut_off_peers() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=5, latency=0.01, dial_timeout=2.0)
        a, b = network.connector("room"), network.connector("room")
        ra, rb = Recorder(), Recorder()
        await a.start(ra)
        await b.start(rb)
        a.dial("sim-999")
        await ra.until("failed")
        assert "not in room" in ra.log[-1][2]
        network.partition({a.local_id})
        start = asyncio.get_running_loop().time()
        a.dial(b.local_id)
        while sum(what == "failed" for _, what, _ in ra.log) < 2:
            ra.changed.clear()
            await ra.changed.wait()
        assert ra.log[-1][0] - start == pytest.approx(2.0)
        await a.aclose()
        await b.aclose()

    run(scenario())


def test_send_on_a_closed_link_raises() -> None:
    async def scenario() -> None:
        network = SimNetwork(seed=6)
        a, ra, b, _ = await pair(network)
        link = ra.links[b.local_id]
        await link.aclose()
        with pytest.raises(TransportError, match="closed link"):
            link.send(b"late")
        await a.aclose()
        await b.aclose()

    run(scenario())


def test_one_seed_replays_the_same_run() -> None:
    def trace(seed: int) -> list[tuple[float, str, str]]:
        async def scenario() -> list[tuple[float, str, str]]:
            network = SimNetwork(seed=seed, latency=0.01, jitter=0.03)
            a, ra, b, rb = await pair(network)
            for index in range(50):
                ra.links[b.local_id].send(f"a{index}".encode())
                rb.links[a.local_id].send(f"b{index}".encode())
                await asyncio.sleep(0.001)
            await asyncio.sleep(1)
            await a.aclose()
            await b.aclose()
            return ra.log + rb.log

        return run(scenario())

    assert trace(7) == trace(7)
    assert trace(7) != trace(8)
