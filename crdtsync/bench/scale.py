"""Scale: a room of 32 simulated peers, meshed under ``max_conns``; memory and messages.

For each room size (default 32) and each ``max_conns`` (8, and the default 20: below N - 1
both are partial meshes), peers join one room of the in-memory ``SimNetwork`` (5 ms per
hop, seeded) on a virtual clock, so no figure depends on how busy the machine is. Each
run has a seed of its own, hence a random mesh of its own. Per room:

- links and the largest degree once every peer holds ``min(max_conns, N - 1)`` synced links
  (``max_conns`` bounds the dials a peer makes, not the dials it accepts); time to form, in
  simulated seconds (network round trips; CPU time is not simulated), and the messages
  delivered until then (handshakes, sync, presence, neighbour lists);
- memory per peer and per link, with ``tracemalloc``: the Python heap the room holds once
  formed and settled, divided by N; and that heap less the heap of N lone peers (each in a
  room of its own: the same objects, no links), divided by the links. A link is both of its
  ends: mesh state, link core, sync session, neighbour lists, timers. What the simulated
  transport allocates itself (its pipes, and link objects standing in for aiortc's
  connection, SCTP association and data channel) is left out, so the figures are the
  engine's own whatever carries the bytes. Not seen either: pycrdt's Rust heap (the
  documents are empty here) and allocator overhead. Tracing slows Python several times over,
  so it is on only while the room forms;
- messages and bytes delivered per edit: one-character inserts by seeded random peers, one
  every 50 ms of simulated time, longer than the batching window (10 ms) and than an edit
  takes to cross the room, so each edit travels alone (bursts merge, and cost less). The
  references are a flood along a spanning tree (N - 1 deliveries per edit, what a full mesh
  does) and a relay server (1 up + N - 1 down = N). Heartbeats are off in these rooms (they
  cost 4 messages per link per second by default, whatever the edits), so the network's
  counters hold only what the edits cost. Every replica must end equal, with every edit.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import random
import string
import tracemalloc
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pycrdt

from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.mesh import DEFAULT_MAX_CONNS
from crdtsync.peer import Peer
from crdtsync.protocol.link import LinkSettings
from crdtsync.testing import virtual_clock
from crdtsync.testing.convergence import wait_converged
from crdtsync.transport import memory
from crdtsync.transport.memory import SimNetwork

__all__ = ["run"]

T = TypeVar("T")

PEERS = 32
MAX_CONNS = (8, DEFAULT_MAX_CONNS)  # a sparse partial mesh, and the default
HEADLINE_MAX_CONNS = DEFAULT_MAX_CONNS
# Total edits in the room; --edits lowers it. Past ~100 the per-edit figures hardly move.
EDITS = 200
EDIT_GAP = 0.05  # simulated seconds between edits: a room typing 20 characters a second
LATENCY = 0.005  # simulated seconds per hop, as on a LAN
SETTLE = 1.0  # simulated seconds for late LINKS, glare closes and relayed duplicates
TIMEOUT = 60.0  # simulated seconds, for forming and for converging
# No heartbeats while counting: pings never fall due within a run.
QUIET = LinkSettings(heartbeat_interval=3600.0, dead_after=7200.0)
SIM_TRANSPORT = tracemalloc.Filter(False, memory.__file__)
KIB = 1024


@dataclass(frozen=True, slots=True)
class Room:
    """What one room of a run held and did."""

    links: int
    max_degree: int
    heap: int  # bytes held once formed and settled
    formed_in: float  # simulated seconds
    form_messages: int  # delivered until formed and settled
    messages: int  # delivered for the edits
    wire_bytes: int


async def run(options: BenchOptions, progress: Progress) -> BenchResult:
    """Measure each room size (default 32) with each ``max_conns`` (8 and 20), ``options.runs``
    times; ``options.edits`` caps the edits per room (default 200).

    The headline is for ``max_conns=20`` and the first room size: ``messages_per_edit`` and
    its ratios to a spanning-tree flood (N - 1) and to a relay server (N), and memory per
    peer and per link in KiB; the same keys with ``_n{N}_c{max_conns}`` cover every room.
    """
    sizes = options.peers_or(PEERS)
    edits = min(options.edits, EDITS)
    result = BenchResult(
        "scale",
        {
            "peers": list(sizes),
            "max_conns": list(MAX_CONNS),
            "edits": edits,
            "edit_gap_s": EDIT_GAP,
            "latency_s": LATENCY,
        },
    )
    for peers in sizes:
        for run_index in range(1, options.runs + 1):
            seed = run_index
            lone = await _virtual(functools.partial(_lone_heap, peers, seed))
            result.add(f"memory per lone peer N={peers}", "KiB", lone / peers / KIB)
            for max_conns in MAX_CONNS:
                room = f"N={peers} c={max_conns}"
                figures = await _measure(peers, max_conns, edits, seed, lone)
                for label, (unit, value) in figures.items():
                    result.add(f"{label} {room}", unit, value)
                progress(
                    f"{room} run {run_index}/{options.runs}: "
                    + ", ".join(
                        f"{label} {value:.4g} {unit}" for label, (unit, value) in figures.items()
                    )
                    + f" (flood {peers - 1}, relay {peers} msgs per edit)"
                )
            for max_conns in MAX_CONNS:
                _headline(result, peers, max_conns)
    result.lead_with(f"_n{sizes[0]}_c{HEADLINE_MAX_CONNS}")
    return result


async def _measure(
    peers: int, max_conns: int, edits: int, seed: int, lone: int
) -> dict[str, tuple[str, float]]:
    """One run's figures for one room: label -> (unit, value)."""
    room = await _virtual(functools.partial(_room_run, peers, max_conns, edits, seed))
    return {
        "links": ("links", room.links),
        "max degree": ("links", room.max_degree),
        "memory per peer": ("KiB", room.heap / peers / KIB),
        "memory per link": ("KiB", (room.heap - lone) / room.links / KIB),
        "messages per edit": ("msgs", room.messages / edits),
        "bytes per edit": ("B", room.wire_bytes / edits),
        "form time": ("s", room.formed_in),
        "messages to form": ("msgs", room.form_messages),
    }


def _headline(result: BenchResult, peers: int, max_conns: int) -> None:
    room = f"N={peers} c={max_conns}"
    messages = result.median(f"messages per edit {room}")
    suffix = f"_n{peers}_c{max_conns}"
    result.headline[f"messages_per_edit{suffix}"] = messages
    result.headline[f"messages_vs_flood{suffix}"] = messages / (peers - 1)
    result.headline[f"messages_vs_relay{suffix}"] = messages / peers
    result.headline[f"memory_per_peer_kib{suffix}"] = result.median(f"memory per peer {room}")
    result.headline[f"memory_per_link_kib{suffix}"] = result.median(f"memory per link {room}")


async def _virtual(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``scenario()`` on a virtual clock, in a thread: this loop's clock is real."""
    return await asyncio.to_thread(virtual_clock.run, scenario(), timeout=10 * TIMEOUT)


@asynccontextmanager
async def _room(
    network: SimNetwork, count: int, max_conns: int, *, lone: bool = False
) -> AsyncIterator[list[Peer]]:
    """``count`` started peers in one room (or each in its own), closed together on exit."""
    peers = [
        Peer(
            pycrdt.Doc(),
            room=f"lone-{index}" if lone else "scale",
            network=network,
            max_conns=max_conns,
            link_settings=QUIET,
        )
        for index in range(count)
    ]
    try:
        for peer in peers:
            await peer.start()
        yield peers
    finally:
        # All at once: one by one, each leaver would set the rest resyncing and redialing.
        await asyncio.gather(*(peer.aclose() for peer in peers))


async def _form(peers: list[Peer], max_conns: int) -> None:
    """Wait until every peer holds ``min(max_conns, N - 1)`` open links, all synced."""
    want = min(max_conns, len(peers) - 1)

    def formed(peer: Peer) -> bool:
        return len(peer.peers) >= want and peer.synced

    while not all(formed(peer) for peer in peers):
        for peer in peers:
            check = functools.partial(formed, peer)
            await peer.wait_for(check, timeout=TIMEOUT, what=f"{want} synced links")


def _links(peers: list[Peer]) -> int:
    ends = sum(len(peer.peers) for peer in peers)
    if ends % 2:
        raise RuntimeError(f"links are not symmetric: {ends} link ends")
    return ends // 2


async def _room_run(count: int, max_conns: int, edits: int, seed: int) -> Room:
    """Form a room under ``tracemalloc``, weigh it, stop tracing, then type in it."""
    await _warm_up()
    loop = asyncio.get_running_loop()
    network = SimNetwork(seed, latency=LATENCY)
    async with AsyncExitStack() as stack:
        with _traced() as heap:
            before, started = heap(), loop.time()
            peers = await stack.enter_async_context(_room(network, count, max_conns))
            await _form(peers, max_conns)
            formed_in = loop.time() - started
            await asyncio.sleep(SETTLE)
            held = heap() - before
        form_messages = messages = network.messages_delivered
        wire_bytes = network.bytes_delivered
        await _type(peers, edits, random.Random(seed))
        await asyncio.sleep(SETTLE)  # duplicates still on their way count too
        return Room(
            links=_links(peers),
            max_degree=max(len(peer.peers) for peer in peers),
            heap=held,
            formed_in=formed_in,
            form_messages=form_messages,
            messages=network.messages_delivered - messages,
            wire_bytes=network.bytes_delivered - wire_bytes,
        )


async def _type(peers: list[Peer], edits: int, rng: random.Random) -> None:
    """``edits`` one-character inserts by random peers, ``EDIT_GAP`` apart; then converge."""
    for _ in range(edits):
        text = rng.choice(peers).doc().get("text", type=pycrdt.Text)
        text.insert(rng.randint(0, len(text)), rng.choice(string.ascii_lowercase))
        await asyncio.sleep(EDIT_GAP)
    docs: list[pycrdt.Doc[Any]] = [peer.doc() for peer in peers]
    await wait_converged(docs, timeout=TIMEOUT)
    for index, doc in enumerate(docs):
        length = len(doc.get("text", type=pycrdt.Text))
        if length != edits:
            raise RuntimeError(f"peer {index} converged to {length} characters, not {edits}")


async def _lone_heap(count: int, seed: int) -> int:
    """Heap bytes ``count`` started peers hold, each alone in its room."""
    await _warm_up()
    with _traced() as heap:
        before = heap()
        async with _room(SimNetwork(seed, latency=LATENCY), count, 1, lone=True):
            await asyncio.sleep(SETTLE)  # every peer hears its (empty) room
            return heap() - before


async def _warm_up() -> None:
    """Link two peers and sync an edit: what is imported or cached once is not in a figure."""
    async with _room(SimNetwork(0, latency=LATENCY), 2, 1) as peers:
        await _form(peers, 1)
        await _type(peers, 1, random.Random(0))


@contextmanager
def _traced() -> Iterator[Callable[[], int]]:
    """Trace allocations meanwhile; yields what measures the heap traced so far."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        yield _heap
    finally:
        if started:
            tracemalloc.stop()


def _heap() -> int:
    """Bytes traced and still held, the simulated transport's own allocations left out."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces([SIM_TRANSPORT])
    return sum(trace.size for trace in snapshot.traces)
