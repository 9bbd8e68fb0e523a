"""Mesh formation: time for N peers to join a room and be linked with, and synced to, all.

For each room size (2, 4, 8 and 16 peers by default), in one process on 127.0.0.1:

- crdtsync: N ``Peer``s with empty documents start together against our signaling server;
  the clock runs from their start until every one has N-1 linked peers and is synced (what
  ``wait_for_peers(N - 1)`` and ``wait_synced`` wait for). That holds joining the room,
  offers and answers through the server, and our HELLO and sync over each new channel.
- the floor: bare aiortc, the same N*(N-1)/2 peer connections with one data channel each,
  the offer and answer handed over in-process, all opened at once, with ICE held to loopback
  as our transport holds it; the clock stops when every channel is open at both ends.

Both are measured in each run, in alternating order so neither always goes first. Peers in
one process share one event loop, so a room's connections are set up one CPU slice at a
time, ours and the floor's alike: the ratio compares the work, not the parallelism.
"""

from __future__ import annotations

import time
from typing import Any

import pycrdt

from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.bench.rooms import linked_peers, raw_mesh
from crdtsync.signaling.server import SignalingServer

__all__ = ["run"]

TIMEOUT = 60.0  # for a whole room to form: 16 peers take a few seconds here


async def crdtsync_once(nodes: int) -> float:
    """Seconds for ``nodes`` peers started together to be linked with all others, and synced."""
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(nodes)]
    async with SignalingServer() as server:
        started = time.perf_counter()
        async with linked_peers(server.url, docs, room="formation", timeout=TIMEOUT):
            return time.perf_counter() - started


async def raw_once(nodes: int) -> float:
    """Seconds to open a bare aiortc data channel between every two of ``nodes`` parties."""
    started = time.perf_counter()
    async with raw_mesh(nodes, timeout=TIMEOUT):
        return time.perf_counter() - started


async def run(options: BenchOptions, progress: Progress) -> BenchResult:
    """Form each room size ``options.runs`` times, ours and the floor in turn.

    Headline ``ratio_to_raw_aiortc_nN`` per size: our median time over the floor's.
    """
    sizes = options.peers_or(2, 4, 8, 16)
    result = BenchResult(
        "formation",
        {"peers": list(sizes), "connections": [nodes * (nodes - 1) // 2 for nodes in sizes]},
    )
    for nodes in sizes:
        for run in range(1, options.runs + 1):
            contenders = {"crdtsync": crdtsync_once, "raw aiortc": raw_once}
            order = list(contenders) if run % 2 else list(reversed(contenders))
            times = {name: await contenders[name](nodes) for name in order}
            for name in contenders:
                result.add(f"{name} N={nodes}", "s", times[name])
            progress(
                f"N={nodes} run {run}/{options.runs}: "
                + ", ".join(f"{name} {times[name]:.3f} s" for name in contenders)
            )
        result.headline[f"ratio_to_raw_aiortc_n{nodes}"] = result.median(
            f"crdtsync N={nodes}"
        ) / result.median(f"raw aiortc N={nodes}")
    return result
