"""Peers behind NAT, in namespaces of their own (``nat.py``): with a TURN server on the WAN
the relay wins and their documents converge; without one they say they cannot link, and
keep retrying with bounded memory and file descriptors.

Every process is ``crdtsync`` run inside a namespace (``ip netns exec``): the signaling
server and coturn on the WAN, one ``crdtsync -v peer`` per LAN, whose log says which path
each link took. Needs root, iproute2, nftables and coturn: without them the tests skip with
the reason, and fail under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from nat import WAN_ADDRESS, Topology, netns_tools
from needs import require_found

from crdtsync.testing.coturn import Coturn, turnserver_binary
from crdtsync.testing.processes import PeerProcess, SignalProcess

TIMEOUT = 60.0
SECRET = "nat-test-secret"
TURN_URL = f"turn:{WAN_ADDRESS}:3478?transport=udp"
FAILURES = 3  # dials seen failing in a row, to call it retrying
FD_SLACK = 16  # descriptors a retrying peer may hold beyond its first failure's count
RSS_SLACK = 32 << 20  # bytes of resident memory, likewise (one aiortc connection ~0.3 MB)
POLL = 0.2  # seconds between looks at another process's log


@pytest.fixture
def topology() -> Iterator[Topology]:
    require_found(netns_tools)
    require_found(turnserver_binary)
    topology = Topology()
    try:
        topology.build()
        yield topology
    finally:
        topology.tear_down()


@asynccontextmanager
async def signaling(topology: Topology, *, turn: bool) -> AsyncIterator[str]:
    """``crdtsync signal`` on the WAN (handing out TURN credentials if ``turn``); its URL."""
    options = ["--host", WAN_ADDRESS]
    if turn:
        options += ["--turn-url", TURN_URL, "--turn-secret", SECRET]
    server = await SignalProcess.start(
        options=options, prefix=topology.exec_prefix("wan"), timeout=TIMEOUT
    )
    try:
        yield server.url
    finally:
        await server.kill()


@asynccontextmanager
async def lan_peers(
    topology: Topology, url: str, logs: Path
) -> AsyncIterator[tuple[PeerProcess, PeerProcess]]:
    """One ``crdtsync -v peer`` in each LAN, its log in ``logs/lan-X.log``."""
    peers: list[PeerProcess] = []
    try:
        for side in ("a", "b"):
            peer = await PeerProcess.start(
                url,
                room="nat",
                prefix=topology.exec_prefix(f"lan-{side}"),
                name=f"lan-{side}",
                log=logs / f"lan-{side}.log",
                verbose=True,
                host_address=None,  # its LAN address: the namespace has no other
                timeout=TIMEOUT,
            )
            peers.append(peer)
        yield peers[0], peers[1]
    finally:
        for peer in peers:
            await peer.kill()


def _paths(log: Path, remote: str) -> list[tuple[str, str]]:
    """The candidate types of each link to ``remote`` the log says opened."""
    pattern = rf"data channel to {re.escape(remote)} open via (\S+) \S+ -> (\S+) "
    return re.findall(pattern, log.read_text(errors="replace"))


async def test_behind_nat_the_relay_wins_and_documents_converge(
    topology: Topology, tmp_path: Path
) -> None:
    async with (
        Coturn.start(
            secret=SECRET,
            host=WAN_ADDRESS,
            command_prefix=topology.exec_prefix("wan"),
            log_dir=tmp_path,
        ),
        signaling(topology, turn=True) as url,
        lan_peers(topology, url, tmp_path) as (alice, bob),
    ):
        await alice.until_peers(lambda peers: bob.id in peers)
        await bob.until_peers(lambda peers: alice.id in peers)
        await alice.send(append="behind ")
        await bob.send(append="nat ")
        for peer in (alice, bob):
            await peer.until_text({"behind", "nat"})
        assert await alice.text() == await bob.text()
        for log, remote in ((tmp_path / "lan-a.log", bob.id), (tmp_path / "lan-b.log", alice.id)):
            paths = _paths(log, remote)
            assert paths, f"{log.name} names no open link to {remote}"
            assert all("relay" in pair for pair in paths), paths


def _usage(pid: int) -> tuple[int, int]:
    """(open file descriptors, resident bytes) of process ``pid``."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    (kilobytes,) = re.findall(r"VmRSS:\s+(\d+) kB", status)
    return fds, int(kilobytes) * 1024


async def _failures_reach(logs: list[Path], count: int) -> None:
    """Until the peers' logs hold ``count`` failed dials between them."""
    async with asyncio.timeout(4 * TIMEOUT):
        while True:
            if (
                sum(log.read_text(errors="replace").count("could not link") for log in logs)
                >= count
            ):
                return
            await asyncio.sleep(POLL)  # a poll of other processes' logs, not a synchronisation


async def test_without_turn_they_say_so_and_retry_within_bounds(
    topology: Topology, tmp_path: Path
) -> None:
    logs = [tmp_path / "lan-a.log", tmp_path / "lan-b.log"]
    async with (
        signaling(topology, turn=False) as url,
        lan_peers(topology, url, tmp_path) as (alice, bob),
    ):
        await _failures_reach(logs, 1)
        first = [_usage(peer.process.pid) for peer in (alice, bob)]
        await _failures_reach(logs, FAILURES)
        later = [_usage(peer.process.pid) for peer in (alice, bob)]
        assert not alice.peers
        assert not bob.peers
        for (fds, rss), (fds_now, rss_now) in zip(first, later, strict=True):
            assert fds_now <= fds + FD_SLACK, (fds, fds_now)
            assert rss_now <= rss + RSS_SLACK, (rss, rss_now)
