"""The editor example, loaded as a module, and a room of two peers for it on the simulated
network (real time: Textual runs its own timers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import ModuleType

import pycrdt
import pytest
from editor_harness import TIMEOUT

from crdtsync import Peer
from crdtsync.bench.editor import load_editor
from crdtsync.testing import SimNetwork


@pytest.fixture(scope="session")
def editor() -> ModuleType:
    return load_editor()


@pytest.fixture
async def room() -> AsyncIterator[tuple[Peer, Peer]]:
    """Alice (who gets the editor) and Bob (who edits from code), linked and synced."""
    network = SimNetwork(seed=11, latency=0.002)
    alice = Peer(pycrdt.Doc(), room="edit", network=network)
    bob = Peer(pycrdt.Doc(), room="edit", network=network)
    async with alice, bob:
        await alice.wait_for_peers(1, timeout=TIMEOUT)
        await bob.wait_synced(timeout=TIMEOUT)
        yield alice, bob
