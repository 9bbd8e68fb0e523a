"""The most realistic convergence test we have: real concurrent editing traces.

One simulated peer per author emits that author's edits (converted to Yjs updates) in
order, while the mesh carries them; every replica must end at the trace's final text.
"""

from __future__ import annotations

import asyncio

import pycrdt
import pytest

from crdtsync.testing import SimNetwork, sim_room, wait_converged
from crdtsync.testing.traces import (
    TEXT_NAME,
    ConcurrentTrace,
    bundled_trace_path,
    client_id_for_agent,
    concurrent_updates,
    load_trace,
)
from crdtsync.testing.virtual_clock import run


@pytest.mark.parametrize("name", ["friendsforever", "clownschool"])
@pytest.mark.parametrize("max_conns", [20, 1])
def test_concurrent_trace_converges_to_end_content(name: str, max_conns: int) -> None:
    trace = load_trace(bundled_trace_path(name))
    assert isinstance(trace, ConcurrentTrace)
    updates = concurrent_updates(trace)
    docs = [pycrdt.Doc(client_id=client_id_for_agent(agent)) for agent in range(trace.num_agents)]

    async def replay() -> None:
        network = SimNetwork(seed=11, latency=0.02, jitter=0.02)
        async with sim_room(network, docs=docs, room=name, max_conns=max_conns):
            for done, item in enumerate(updates, 1):
                docs[item.agent].apply_update(item.update)
                if done % 40 == 0:
                    await asyncio.sleep(0.01)  # the authors type while the mesh carries
            await wait_converged(docs, timeout=60.0)

    run(replay())
    for doc in docs:
        assert str(doc.get(TEXT_NAME, type=pycrdt.Text)) == trace.end_content
