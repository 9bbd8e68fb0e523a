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

Then, for rooms of up to ``MAX_PROCESS_PEERS``, rooms with each peer in a process of its own
(``process_rooms.py``): crdtsync, y-webrtc (Node) and a mixed room. Their peers join in turn,
each once the one before has subscribed (y-webrtc peers started together may leave a pair
unconnected: see ``ProcessRoom.link``); the clock runs from the first join until every peer
is linked with all the others and synced (for a Node peer: each connection open and its sync
step 2 received). The y-webrtc and mixed rooms need Node (else skipped, with the reason).

Beside each time, the CPU time spent on it (``... CPU`` series): this process's for the
first two, every peer process's (not the signaling server's) for rooms of processes.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from typing import Any

import pycrdt

from crdtsync.bench.process_rooms import LAYOUTS, Contender, Traffic, process_contenders
from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.bench.rooms import linked_peers, raw_mesh
from crdtsync.signaling.server import SignalingServer

__all__ = ["run"]

TIMEOUT = 60.0  # for a whole room to form: 16 peers take a few seconds here
MAX_PROCESS_PEERS = 8  # rooms of processes up to this size: 16 Node peers are ~1 GB here
COMMAND = "scripts/loopback-netns .venv/bin/crdtsync bench formation"


async def crdtsync_once(nodes: int) -> Traffic:
    """Seconds for ``nodes`` peers started together to be linked with all others, and synced;
    with the CPU time this process spent on it (messages and bytes not counted: 0)."""
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(nodes)]
    async with SignalingServer() as server:
        cpu, started = time.process_time(), time.perf_counter()
        async with linked_peers(server.url, docs, room="formation", timeout=TIMEOUT):
            return Traffic(time.perf_counter() - started, 0, 0, time.process_time() - cpu)


async def raw_once(nodes: int) -> Traffic:
    """Seconds to open a bare aiortc data channel between every two of ``nodes`` parties,
    and this process's CPU time for it."""
    cpu, started = time.process_time(), time.perf_counter()
    async with raw_mesh(nodes, timeout=TIMEOUT):
        return Traffic(time.perf_counter() - started, 0, 0, time.process_time() - cpu)


async def joined_in_turn(contender: Contender, nodes: int) -> Traffic:
    """A room of processes forming, its peers joining in turn (module doc)."""
    async with contender.room(nodes, TIMEOUT) as room:
        return await room.link()


async def run(options: BenchOptions, progress: Progress) -> BenchResult:
    """Form each room size ``options.runs`` times, ours and the floor in turn, then the
    rooms of processes.

    Headline per size: ``ratio_to_raw_aiortc_nN``, our median time over the floor's, and
    (up to ``MAX_PROCESS_PEERS``, with Node) ``ratio_ywebrtc_to_crdtsync_processes_nN``,
    y-webrtc's median over crdtsync's with a process per peer, both joining in turn.
    """
    sizes = options.peers_or(2, 4, 8, 16)
    result = BenchResult(
        "formation",
        {
            "peers": list(sizes),
            "connections": [nodes * (nodes - 1) // 2 for nodes in sizes],
            "process_layout": LAYOUTS,
        },
    )
    async with AsyncExitStack() as stack:
        in_processes, skipped = await process_contenders(
            stack, "bench formation", COMMAND, progress
        )
        if skipped is not None:
            result.params["skipped"] = skipped
        for nodes in sizes:
            for run in range(1, options.runs + 1):
                contenders = {"crdtsync": crdtsync_once, "raw aiortc": raw_once}
                order = list(contenders) if run % 2 else list(reversed(contenders))
                spent = {name: await contenders[name](nodes) for name in order}
                if nodes <= MAX_PROCESS_PEERS:
                    for contender in in_processes:
                        spent[contender.name] = await joined_in_turn(contender, nodes)
                for name, traffic in spent.items():
                    result.add(f"{name} N={nodes}", "s", traffic.seconds)
                for name, traffic in spent.items():
                    result.add(f"{name} CPU N={nodes}", "CPU s", traffic.cpu_seconds)
                progress(
                    f"N={nodes} run {run}/{options.runs}: "
                    + ", ".join(
                        f"{name} {traffic.seconds:.3f} s ({traffic.cpu_seconds:.3f} CPU s)"
                        for name, traffic in spent.items()
                    )
                )
            result.headline[f"ratio_to_raw_aiortc_n{nodes}"] = result.median(
                f"crdtsync N={nodes}"
            ) / result.median(f"raw aiortc N={nodes}")
            if f"y-webrtc N={nodes}" in result.series:
                result.headline[f"ratio_ywebrtc_to_crdtsync_processes_n{nodes}"] = result.median(
                    f"y-webrtc N={nodes}"
                ) / result.median(f"crdtsync, process per peer N={nodes}")
    return result
