"""Convergence of a concurrent editing trace on the simulated network, against the CRDT limit.

The sync engine's own overhead, without WebRTC: one peer per author replays the trace
(friendsforever by default) on a zero-latency ``SimNetwork`` until every replica is equal;
the lower bound applies the same updates to one ``Doc``. Both are timed in the same run,
several times, and the ratio of medians is reported. Run:

    .venv/bin/python benchmarks/sim_convergence.py [--trace NAME] [--runs 5] [--peers 4]

Prints a table and writes ``benchmarks/results/sim_convergence.json``. The traces are from
josephg/editing-traces (CC BY 4.0; see crdtsync/data/CREDITS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import pycrdt

from crdtsync.testing import SimNetwork, sim_room, wait_converged
from crdtsync.testing.traces import (
    TEXT_NAME,
    AgentUpdate,
    ConcurrentTrace,
    bundled_trace_path,
    concurrent_updates,
    load_trace,
)

RESULTS = Path(__file__).parent / "results"


def lower_bound(updates: list[AgentUpdate]) -> float:
    started = time.perf_counter()
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    for item in updates:
        doc.apply_update(item.update)
    return time.perf_counter() - started


async def mesh_run(
    trace: ConcurrentTrace, updates: list[AgentUpdate], peers: int
) -> dict[str, float]:
    network = SimNetwork(seed=0, latency=0.0)
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(max(peers, trace.num_agents))]
    async with sim_room(network, docs=docs):
        started = time.perf_counter()
        for done, item in enumerate(updates, 1):
            docs[item.agent].apply_update(item.update)
            if done % 20 == 0:
                await asyncio.sleep(0)
        await wait_converged(docs, timeout=120)
        elapsed = time.perf_counter() - started
        before = network.bytes_delivered
    assert {str(doc.get(TEXT_NAME, type=pycrdt.Text)) for doc in docs} == {trace.end_content}
    return {
        "seconds": elapsed,
        "bytes": float(before),
        "messages": float(network.messages_delivered),
    }


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default="friendsforever")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--peers", type=int, default=4)
    args = parser.parse_args()
    trace = load_trace(bundled_trace_path(args.trace))
    assert isinstance(trace, ConcurrentTrace)
    updates = concurrent_updates(trace)
    bound: list[float] = []
    mesh: list[dict[str, float]] = []
    for run in range(args.runs):  # side by side, so drift hits both alike
        bound.append(lower_bound(updates))
        mesh.append(asyncio.run(mesh_run(trace, updates, args.peers)))
        latest = mesh[-1]["seconds"]
        print(f"  run {run + 1}/{args.runs}: mesh {latest:.3f} s, bound {bound[-1]:.4f} s")
    seconds = summary([m["seconds"] for m in mesh])
    result = {
        "trace": args.trace,
        "edits": len(updates),
        "peers": max(args.peers, trace.num_agents),
        "runs": args.runs,
        "machine": f"Python {platform.python_version()} on {platform.machine()}",
        "mesh_seconds": seconds,
        "lower_bound_seconds": summary(bound),
        "ratio_to_lower_bound": seconds["median"] / statistics.median(bound),
        "wire_bytes_per_edit": statistics.median(m["bytes"] for m in mesh) / len(updates),
        "messages": statistics.median(m["messages"] for m in mesh),
    }
    print(f"{'measure':<28}{'median':>12}{'min':>12}{'max':>12}")
    for name in ("mesh_seconds", "lower_bound_seconds"):
        row = result[name]
        print(f"{name:<28}{row['median']:>12.4f}{row['min']:>12.4f}{row['max']:>12.4f}")
    print(
        f"ratio to lower bound: {result['ratio_to_lower_bound']:.1f}x; "
        f"wire bytes per edit: {result['wire_bytes_per_edit']:.1f}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sim_convergence.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
