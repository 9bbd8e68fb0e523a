"""Convergence: N peers each make M concurrent small edits; time until every replica is equal.

Contenders, measured in turn in each run on 127.0.0.1; the first three with every peer in
this one process (one event loop), the next three with each peer in a process of its own
(``process_rooms.py``), as a y-webrtc peer must be (a Node process holds one document per
room):

- crdtsync: ``Peer``s over real aiortc data channels, introduced by our signaling server;
- the server relay: pycrdt-websocket's ``WebsocketServer`` with ``pycrdt.Provider`` clients
  over ``websockets`` (compression off), the usual way to sync pycrdt documents;
- the lower bound: applying all N*M updates to one ``Doc``, with no network at all;
- crdtsync, process per peer: the same ``Peer``s, one Python process each, our server;
- y-webrtc: unmodified y-webrtc over @roamhq/wrtc, one Node process per peer, y-webrtc's
  ``bin/server.js`` (the peer-to-peer Yjs users run today);
- mixed: half crdtsync peers (``dialect="y-webrtc"``), half y-webrtc peers, one process each.

The last two need Node and ``npm ci`` in a loopback-only network namespace; without them
they are skipped with a one-line reason and the others run. For every contender but the
lower bound, the data-channel (or WebSocket) messages and bytes sent per edit and the CPU
time per message are counted too, from the first edit until the room is quiet.

Each peer's edits are one-character inserts made ahead of time in a document of its own
(so all of them are concurrent with every other peer's), one Yjs update each, as a keystroke
in an editor makes. In the timed part each peer applies its own updates to its document, one
per event-loop tick, as a person typing fast would; the clock stops when all documents are
equal. Making the edits ahead keeps pycrdt's cost of finding a text index, the same for
every engine, out of a comparison between engines, and gives the lower bound the very same
updates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pycrdt
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from crdtsync.bench.process_rooms import (
    LAYOUTS,
    QUIET_WINDOW,
    Contender,
    Traffic,
    process_contenders,
)
from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.bench.rooms import linked_peers
from crdtsync.bench.wire import WireCount, counting_sends
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing.convergence import wait_converged

__all__ = ["make_edits", "run", "time_typing"]

TIMEOUT = 300.0  # for linking, and for converging: 8 y-webrtc peers take ~60 s here
ROOM_PATH = "/bench"  # the relay's room: every client is in the same one
HEADLINE_PEERS = 4  # the room size whose ratios go to the top of the JSON
COMMAND = "scripts/loopback-netns .venv/bin/crdtsync bench convergence"


def make_edits(peers: int, edits: int) -> list[list[bytes]]:
    """Each peer's ``edits`` one-character appends, made in its own document, as updates."""
    made: list[list[bytes]] = []
    for index in range(peers):
        doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=index + 1)
        updates: list[bytes] = []
        doc.observe(lambda event, updates=updates: updates.append(event.update))
        text = doc.get("text", type=pycrdt.Text)
        mark = chr(ord("a") + index % 26)
        for _ in range(edits):
            text.insert(len(text), mark)
        made.append(updates)
    return made


async def _type(doc: pycrdt.Doc[Any], updates: list[bytes]) -> None:
    for update in updates:
        doc.apply_update(update)
        await asyncio.sleep(0)  # one edit per event-loop tick


async def time_typing(
    docs: Sequence[pycrdt.Doc[Any]], edits: list[list[bytes]], wire: WireCount
) -> Traffic:
    """Type, until every doc is equal (the time) and ``wire`` stopped moving (the traffic)."""
    messages, sent, cpu = wire.messages, wire.bytes, time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(_type(doc, updates) for doc, updates in zip(docs, edits, strict=True)))
    await wait_converged(docs, timeout=TIMEOUT)
    seconds = time.perf_counter() - started
    while True:  # quiet as process_rooms measures it: no message sent for QUIET_WINDOW
        seen = wire.messages
        await asyncio.sleep(QUIET_WINDOW)
        if wire.messages == seen:
            break
    return Traffic(seconds, wire.messages - messages, wire.bytes - sent, time.process_time() - cpu)


async def crdtsync_once(edits: list[list[bytes]]) -> Traffic:
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in edits]
    with counting_sends() as wire:
        async with (
            SignalingServer() as server,
            linked_peers(server.url, docs, room="bench", timeout=TIMEOUT),
        ):
            return await time_typing(docs, edits, wire)


@asynccontextmanager
async def _relay_room(docs: Sequence[pycrdt.Doc[Any]], wire: WireCount) -> AsyncIterator[None]:
    # Imported here: the relay is a benchmark dependency (the "bench" extra), not ours.
    from pycrdt.websocket import WebsocketServer

    async with (
        WebsocketServer() as relay,
        serve(
            lambda connection: relay.serve(_Channel(connection, ROOM_PATH, wire)),
            "127.0.0.1",
            0,
            compression=None,
        ) as server,
        AsyncExitStack() as stack,
    ):
        port = server.sockets[0].getsockname()[1]
        for doc in docs:
            connection = await stack.enter_async_context(
                connect(f"ws://127.0.0.1:{port}{ROOM_PATH}", compression=None)
            )
            channel = _Channel(connection, ROOM_PATH, wire)
            await stack.enter_async_context(pycrdt.Provider(doc, channel))
        yield


async def relay_once(edits: list[list[bytes]]) -> Traffic:
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in edits]
    wire = WireCount()
    async with _relay_room(docs, wire):
        # Warm up as crdtsync's wait_synced does: the room has every client once one edit
        # has reached them all (the providers tell nothing about their first sync).
        docs[0].get("warm-up", type=pycrdt.Text).insert(0, ".")
        await wait_converged(docs, timeout=TIMEOUT)
        return await time_typing(docs, edits, wire)


def lower_bound_once(edits: list[list[bytes]]) -> float:
    target: pycrdt.Doc[Any] = pycrdt.Doc()
    started = time.perf_counter()
    for updates in edits:
        for update in updates:
            target.apply_update(update)
    return time.perf_counter() - started


class _Channel:
    """A ``websockets`` connection as the ``pycrdt.Channel`` the relay and providers use;
    what it sends is counted in ``wire``."""

    def __init__(self, connection: Any, path: str, wire: WireCount) -> None:
        self._connection = connection
        self._path = path
        self._wire = wire

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> _Channel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        await self._connection.send(message)
        self._wire.messages += 1
        self._wire.bytes += len(message)

    async def recv(self) -> bytes:
        return bytes(await self._connection.recv())


def _record(result: BenchResult, name: str, peers: int, edits: int, traffic: Traffic) -> None:
    result.add(f"{name} N={peers}", "s", traffic.seconds)
    result.add(f"{name} messages/edit N={peers}", "msgs", traffic.messages / edits)
    result.add(f"{name} bytes/edit N={peers}", "B", traffic.bytes / edits)
    cpu_us = traffic.cpu_seconds * 1e6
    result.add(f"{name} CPU/message N={peers}", "µs", cpu_us / max(traffic.messages, 1))
    result.add(f"{name} CPU/edit N={peers}", "µs", cpu_us / edits)


async def run(options: BenchOptions, progress: Progress) -> BenchResult:
    """Measure every contender ``options.runs`` times per room size, in turn.

    Room sizes default to 2, 4 and 8 peers. Headline per size: ``speedup_vs_relay`` (relay
    time / crdtsync time), ``ratio_to_lower_bound`` (crdtsync time / lower bound),
    ``speedup_vs_ywebrtc`` (y-webrtc time / crdtsync's with a process per peer, the same
    layout), ``speedup_vs_ywebrtc_one_process`` (y-webrtc time / crdtsync's in one process)
    and ``speedup_mixed_vs_ywebrtc`` (y-webrtc time / the mixed room's). The top-level keys
    are those of 4 peers when measured, else of the first size given.
    """
    sizes = options.peers_or(2, 4, 8)
    result = BenchResult(
        "convergence",
        {
            "peers": list(sizes),
            "edits_per_peer": options.edits,
            "process_layout": {
                **LAYOUTS,
                "relay": "server and every client in the benchmark's one Python process",
            },
        },
    )
    async with AsyncExitStack() as stack:
        in_processes, skipped = await process_contenders(
            stack, "bench convergence", COMMAND, progress
        )
        if skipped is not None:
            result.params["skipped"] = skipped
        contenders: dict[str, Callable[[list[list[bytes]]], Awaitable[Traffic]]] = {
            "crdtsync": crdtsync_once,
            **{contender.name: _converged_in(contender) for contender in in_processes},
            "relay": relay_once,
        }
        for peers in sizes:
            await _measure_size(result, contenders, peers, options, progress)
    headline = HEADLINE_PEERS if HEADLINE_PEERS in sizes else sizes[0]
    result.params["headline_peers"] = headline
    result.lead_with(f"_n{headline}")
    return result


def _converged_in(contender: Contender) -> Callable[[list[list[bytes]]], Awaitable[Traffic]]:
    async def once(edits: list[list[bytes]]) -> Traffic:
        async with contender.room(len(edits), TIMEOUT) as room:
            await room.link()
            return await room.converge(edits)

    return once


async def _measure_size(
    result: BenchResult,
    contenders: dict[str, Callable[[list[list[bytes]]], Awaitable[Traffic]]],
    peers: int,
    options: BenchOptions,
    progress: Progress,
) -> None:
    edits = make_edits(peers, options.edits)
    total = peers * options.edits
    for run in range(1, options.runs + 1):
        times: dict[str, float] = {}
        for name, once in contenders.items():
            traffic = await once(edits)
            _record(result, name, peers, total, traffic)
            times[name] = traffic.seconds
        times["lower bound"] = lower_bound_once(edits)
        result.add(f"lower bound N={peers}", "s", times["lower bound"])
        progress(
            f"N={peers} run {run}/{options.runs}: "
            + ", ".join(f"{name} {seconds:.4f} s" for name, seconds in times.items())
        )
    median = {name: result.median(f"{name} N={peers}") for name in (*contenders, "lower bound")}
    result.headline[f"speedup_vs_relay_n{peers}"] = median["relay"] / median["crdtsync"]
    result.headline[f"ratio_to_lower_bound_n{peers}"] = median["crdtsync"] / median["lower bound"]
    if "y-webrtc" in median:
        ywebrtc = median["y-webrtc"]
        result.headline[f"speedup_vs_ywebrtc_n{peers}"] = (
            ywebrtc / median["crdtsync, process per peer"]
        )
        result.headline[f"speedup_vs_ywebrtc_one_process_n{peers}"] = ywebrtc / median["crdtsync"]
        result.headline[f"speedup_mixed_vs_ywebrtc_n{peers}"] = ywebrtc / median["mixed"]
