"""The editor example, loaded as a module, and a room of two peers for it on the simulated
network (real time: Textual runs its own timers)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from types import ModuleType

import pycrdt
import pytest
from editor_harness import EDITOR, TIMEOUT

from crdtsync import Peer
from crdtsync.testing import SimNetwork


@pytest.fixture(scope="session")
def editor() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crdtsync_editor_example", EDITOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and Textual look modules up by name
    spec.loader.exec_module(module)
    return module


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
