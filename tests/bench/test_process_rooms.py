"""Rooms of peer processes (crdtsync and y-webrtc), at tiny sizes: what they report, never
how fast. Rooms with Node peers need ``npm ci`` and ``scripts/loopback-netns``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from needs import require_found

from crdtsync.bench.child_peers import ChildPeer
from crdtsync.bench.convergence import make_edits
from crdtsync.bench.node import ywebrtc_server
from crdtsync.bench.process_rooms import Layout, node_root, process_room
from crdtsync.errors import ConfigError, TransportError
from crdtsync.signaling.server import SignalingServer

TIMEOUT = 30.0
COMMAND = "scripts/loopback-netns .venv/bin/pytest tests/bench"


@pytest.fixture
async def ours() -> AsyncIterator[str]:
    async with SignalingServer() as server:
        yield server.url


async def test_a_room_of_crdtsync_processes_links_converges_and_counts(ours: str) -> None:
    edits = make_edits(peers=3, edits=10)
    async with process_room(Layout(python=3, node=0), ours, root=None, timeout=TIMEOUT) as room:
        formed = await room.link()
        assert formed.seconds > 0
        assert formed.messages > 0  # HELLO and sync on each link
        assert formed.cpu_seconds > 0
        traffic = await room.converge(edits)
        assert traffic.seconds > 0
        assert traffic.messages > 0  # batched: a few per link, whatever the edits
        assert traffic.bytes > 10 * 3  # the 30 one-character updates, at least
        assert traffic.cpu_seconds > 0
        delays = await room.latencies([0, 2, 1], quiet_gap=0.01)
        assert len(delays) == 3 * 2  # each edit, at each other peer
        assert all(delay > 0 for delay in delays)


async def test_a_room_of_ywebrtc_processes_echoes_every_update() -> None:
    root = _node_root()
    edits = make_edits(peers=2, edits=10)
    async with (
        ywebrtc_server(root) as theirs,
        process_room(Layout(python=0, node=2), theirs.url, root=root, timeout=TIMEOUT) as room,
    ):
        await room.link()
        traffic = await room.converge(edits)
    # Each peer sends its update to the other, which sends it back: 2 messages per edit.
    assert traffic.messages == 2 * 20


async def test_a_mixed_room_converges() -> None:
    root = _node_root()
    edits = make_edits(peers=2, edits=10)
    async with (
        ywebrtc_server(root) as theirs,
        process_room(Layout(python=1, node=1), theirs.url, root=root, timeout=TIMEOUT) as room,
    ):
        await room.link()
        traffic = await room.converge(edits)
        assert traffic.messages > 0
        assert len(await room.latencies([0, 1], quiet_gap=0.01)) == 2


async def test_a_room_with_node_peers_needs_node_modules() -> None:
    with pytest.raises(ConfigError, match="node_modules"):
        async with process_room(Layout(1, 1), "ws://127.0.0.1:1", root=None, timeout=1.0):
            pass


async def test_a_child_that_fails_fails_the_wait_at_once(ours: str) -> None:
    settings = {"room": "r", "signaling": ours, "timeoutMs": 60_000, "dialect": "crdtsync"}
    child = await ChildPeer.python("crdtsync peer 0", settings)
    try:
        await child.event("ready")
        with pytest.raises(TransportError, match="unknown command 'dance'"):
            await child.command("dance", "danced")
    finally:
        await child.aclose()


def _node_root() -> Path:
    """The folder holding node_modules; skip (or fail under CI=true) where Node cannot run."""
    require_found(lambda: node_root("tests/bench", COMMAND))
    return node_root("tests/bench", COMMAND)
