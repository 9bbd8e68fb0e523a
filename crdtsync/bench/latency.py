"""Latency: one small edit on one peer, until it is visible on every other peer; p50 and p99.

N peers (4 and 8 by default) are linked in a room through our signaling server on
127.0.0.1. In turn, a peer picked by a seeded draw inserts one character; every other peer's
document observer notes the moment the edit became visible in it, and each of those N-1
delays is a sample. The next edit starts only once every peer saw the last one, and a quiet
gap longer than the mesh's batching window later, so that each edit leaves at once instead
of waiting for the window (the figure is one edit's latency, not batching's).

The floor, measured in the same run: the same mesh of bare aiortc data channels (N*(N-1)/2
connections in one process, as ours), the same draw of senders and the same pacing, each
round one message about the size of the frame that carries a one-character insert, sent to
every other party; its delay is send to the "message" event.

Every party of a room runs in this one process and event loop, so a round's last receiver
waits for the others' aiortc work as well as its own: p99 holds that queueing, for us and
for the floor alike.

Then the same rounds in rooms with each peer in a process of its own (``process_rooms.py``):
crdtsync, y-webrtc (Node) and a mixed room. The editor stamps the wall clock just before its
insert, each receiver when its text changed, and a delay is the difference (one machine, one
clock). The y-webrtc and mixed rooms need Node (else skipped, with the reason).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import pycrdt

from crdtsync.bench.process_rooms import LAYOUTS, Contender, process_contenders
from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.bench.rooms import linked_peers, raw_mesh
from crdtsync.protocol.batching import DEFAULT_BATCH_WINDOW
from crdtsync.signaling.server import SignalingServer

__all__ = ["Arrivals", "paced_rounds", "percentiles_ms", "run", "typing_delays"]

EDITS = 200  # timed edits per run and room size: N-1 samples each
SEED = 20240601  # the draw of who edits
TIMEOUT = 60.0  # for linking, and for one edit to reach everyone
# Between one edit seen everywhere and the next: the batching window and a margin, so that
# the next edit finds its peer's window closed (the peer may have sent the last one).
QUIET_GAP = DEFAULT_BATCH_WINDOW + 0.005
# The floor's message: as long as the SYNC frame of a one-character insert (~40 bytes).
RAW_MESSAGE = bytes(40)
COMMAND = "scripts/loopback-netns .venv/bin/crdtsync bench latency"


class Arrivals:
    """The delays with which the receivers of each round saw its edit (or message)."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._pending: set[int] = set()
        self._started = 0.0
        self._done: asyncio.Future[None] | None = None

    def expect(self, receivers: set[int]) -> asyncio.Future[None]:
        """Start a round now; the future is done once each of ``receivers`` called ``seen``."""
        self._pending = set(receivers)
        self._done = asyncio.get_running_loop().create_future()
        self._started = time.perf_counter()
        return self._done

    def seen(self, receiver: int) -> None:
        if receiver in self._pending:
            self.delays.append(time.perf_counter() - self._started)
            self._pending.discard(receiver)
            if not self._pending and self._done is not None and not self._done.done():
                self._done.set_result(None)


async def paced_rounds(
    editors: list[int], nodes: int, send: Callable[[int], None], arrivals: Arrivals
) -> list[float]:
    """One round per editor: ``send(editor)``, await every other party, then a quiet gap.

    A first round, by the first editor, goes untimed: right after the room forms, it can
    meet the last of the setup traffic (peers announce their new links a moment after
    linking), which is not an edit's latency.
    """
    for editor in [editors[0], *editors]:
        done = arrivals.expect(set(range(nodes)) - {editor})
        send(editor)
        await asyncio.wait_for(done, TIMEOUT)
        await asyncio.sleep(QUIET_GAP)  # pacing, not synchronisation: see QUIET_GAP
    return arrivals.delays[nodes - 1 :]


async def typing_delays(
    room: Callable[[list[pycrdt.Doc[Any]]], AbstractAsyncContextManager[object]],
    nodes: int,
    editors: list[int],
) -> list[float]:
    """Per-receiver delays of one-character inserts among ``nodes`` docs linked by ``room``
    (a context that links them while entered), one round per editor."""
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(nodes)]
    texts = [doc.get("text", type=pycrdt.Text) for doc in docs]
    arrivals = Arrivals()
    for index, doc in enumerate(docs):
        doc.observe(lambda _event, index=index: arrivals.seen(index))

    def edit(editor: int) -> None:
        text = texts[editor]
        text.insert(len(text), "x")

    async with room(docs):
        delays = await paced_rounds(editors, nodes, edit, arrivals)
    made = len(editors) + 1  # and the untimed first one
    if any(str(text) != "x" * made for text in texts):
        raise RuntimeError(f"the {nodes} documents do not all hold the {made} edits")
    return delays


@asynccontextmanager
async def _signaled_room(docs: list[pycrdt.Doc[Any]]) -> AsyncIterator[object]:
    async with (
        SignalingServer() as server,
        linked_peers(server.url, docs, room="latency", timeout=TIMEOUT) as peers,
    ):
        yield peers


async def crdtsync_once(nodes: int, editors: list[int]) -> list[float]:
    """Per-receiver delays of one run of one-character inserts among ``nodes`` peers."""
    return await typing_delays(_signaled_room, nodes, editors)


async def raw_once(nodes: int, editors: list[int]) -> list[float]:
    """Per-receiver delays of one run of the same rounds over bare aiortc data channels."""
    arrivals = Arrivals()
    async with raw_mesh(nodes, timeout=TIMEOUT) as mesh:
        for receiver, ends in enumerate(mesh.channels):
            for channel in ends.values():
                channel.on("message", lambda _message, receiver=receiver: arrivals.seen(receiver))

        def send(sender: int) -> None:
            for channel in mesh.channels[sender].values():
                channel.send(RAW_MESSAGE)

        return await paced_rounds(editors, nodes, send, arrivals)


Once = Callable[[int, list[int]], Awaitable[list[float]]]  # (nodes, editors) -> delays
# Measured in this order in each run: the floor, then ours, then the rooms of processes.
CONTENDERS: dict[str, Once] = {"raw aiortc": raw_once, "crdtsync": crdtsync_once}


def in_processes(contender: Contender) -> Once:
    """The same rounds in a room of ``contender``'s processes (module doc)."""

    async def once(nodes: int, editors: list[int]) -> list[float]:
        async with contender.room(nodes, TIMEOUT) as room:
            await room.link()
            return await room.latencies(editors, QUIET_GAP)

    return once


def percentiles_ms(delays: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``delays``, in milliseconds."""
    p99 = statistics.quantiles(delays, n=100, method="inclusive")[98]
    return statistics.median(delays) * 1000, p99 * 1000


async def run(options: BenchOptions, progress: Progress) -> BenchResult:
    """Time ``EDITS`` edits per run and room size (default 4 and 8 peers), and the floor.

    Headline per size: ``p50_ms_nN`` and ``p99_ms_nN`` (medians over runs of each run's
    percentile over all its per-receiver delays), and ``ratio_to_raw_aiortc_p50_nN`` and
    ``..._p99_nN``: ours over the floor's; with Node, ``ratio_ywebrtc_to_crdtsync_processes_p50_nN``
    and ``..._p99_nN``: y-webrtc's over crdtsync's with a process per peer.
    """
    sizes = options.peers_or(4, 8)
    result = BenchResult(
        "latency",
        {
            "peers": list(sizes),
            "edits": EDITS,
            "quiet_gap_ms": QUIET_GAP * 1000,
            "seed": SEED,
            "process_layout": LAYOUTS,
        },
    )
    async with AsyncExitStack() as stack:
        in_turn, skipped = await process_contenders(stack, "bench latency", COMMAND, progress)
        if skipped is not None:
            result.params["skipped"] = skipped
        contenders = {**CONTENDERS, **{c.name: in_processes(c) for c in in_turn}}
        for nodes in sizes:
            await _measure_size(result, contenders, nodes, options, progress)
    return result


async def _measure_size(
    result: BenchResult,
    contenders: dict[str, Once],
    nodes: int,
    options: BenchOptions,
    progress: Progress,
) -> None:
    """Every contender, ``options.runs`` times, in rooms of ``nodes``; their headline."""
    draw = random.Random(SEED)
    editors = [draw.randrange(nodes) for _ in range(EDITS)]
    for run in range(1, options.runs + 1):
        line = []
        for name, once in contenders.items():
            delays = await once(nodes, editors)
            if len(delays) != EDITS * (nodes - 1):
                raise RuntimeError(f"{len(delays)} delays, not {EDITS} x {nodes - 1}")
            p50, p99 = percentiles_ms(delays)
            result.add(f"{name} p50 N={nodes}", "ms", p50)
            result.add(f"{name} p99 N={nodes}", "ms", p99)
            line.append(f"{name} p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        progress(f"N={nodes} run {run}/{options.runs}: " + "; ".join(line))
    for percentile in ("p50", "p99"):
        ours = result.median(f"crdtsync {percentile} N={nodes}")
        floor = result.median(f"raw aiortc {percentile} N={nodes}")
        result.headline[f"{percentile}_ms_n{nodes}"] = ours
        result.headline[f"ratio_to_raw_aiortc_{percentile}_n{nodes}"] = ours / floor
        if f"y-webrtc {percentile} N={nodes}" in result.series:
            key = f"ratio_ywebrtc_to_crdtsync_processes_{percentile}_n{nodes}"
            result.headline[key] = result.median(
                f"y-webrtc {percentile} N={nodes}"
            ) / result.median(f"crdtsync, process per peer {percentile} N={nodes}")
