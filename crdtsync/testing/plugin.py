"""pytest plugin: simulated peers for the test suites of applications built on crdtsync.

Loaded by the ``pytest11`` entry point. ``sim_network`` is a seeded ``SimNetwork`` (seed 0,
or ``--crdtsync-seed N``) whose seed is printed when a test fails, so a failure replays;
``sim_peers`` starts a room of linked, synced peers::

    async def test_two_editors(sim_peers):
        async with sim_peers(2) as (alice, bob):
            alice.doc()["text"] = Text("hi")
            ...
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from crdtsync.peer import Peer
from crdtsync.testing.room import sim_room
from crdtsync.transport.memory import SimNetwork

__all__ = ["sim_network", "sim_peers"]

_SEED_KEY = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crdtsync")
    group.addoption(
        "--crdtsync-seed",
        type=int,
        default=0,
        help="seed of the sim_network fixture (default 0); a failing test prints the seed it used",
    )


@pytest.fixture
def sim_network(request: pytest.FixtureRequest) -> SimNetwork:
    """A fresh ``SimNetwork`` seeded from ``--crdtsync-seed``."""
    seed: int = request.config.getoption("--crdtsync-seed")
    request.node.stash[_SEED_KEY] = seed
    return SimNetwork(seed=seed)


@pytest.fixture
def sim_peers(
    sim_network: SimNetwork,
) -> Callable[..., AbstractAsyncContextManager[list[Peer]]]:
    """A factory: ``async with sim_peers(3, max_conns=2) as peers`` (see ``sim_room``)."""

    def factory(
        count: int | None = None, **options: Any
    ) -> AbstractAsyncContextManager[list[Peer]]:
        return sim_room(sim_network, count, **options)

    return factory


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    seed = item.stash.get(_SEED_KEY, None)
    if seed is not None and report.failed:
        report.sections.append(
            ("crdtsync", f"sim_network seed: {seed} (replay with --crdtsync-seed {seed})")
        )
    return report
