"""Convergence: N peers each make M concurrent small edits; time until every replica is equal.

Three contenders, measured in turn in each run, in one process on 127.0.0.1:

- crdtsync: ``Peer``s over real aiortc data channels, introduced by our signaling server;
- the server relay: pycrdt-websocket's ``WebsocketServer`` with ``pycrdt.Provider`` clients
  over ``websockets`` (compression off), the usual way to sync pycrdt documents;
- the lower bound: applying all N*M updates to one ``Doc``, with no network at all.

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
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pycrdt
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.bench.rooms import linked_peers
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing.convergence import wait_converged

__all__ = ["run"]

TIMEOUT = 120.0  # for linking, and for converging
ROOM_PATH = "/bench"  # the relay's room: every client is in the same one
HEADLINE_PEERS = 4  # the room size whose ratios go to the top of the JSON


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


async def _time_typing(docs: Sequence[pycrdt.Doc[Any]], edits: list[list[bytes]]) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(_type(doc, updates) for doc, updates in zip(docs, edits, strict=True)))
    await wait_converged(docs, timeout=TIMEOUT)
    return time.perf_counter() - started


async def crdtsync_once(edits: list[list[bytes]]) -> float:
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in edits]
    async with (
        SignalingServer() as server,
        linked_peers(server.url, docs, room="bench", timeout=TIMEOUT),
    ):
        return await _time_typing(docs, edits)


@asynccontextmanager
async def _relay_room(docs: Sequence[pycrdt.Doc[Any]]) -> AsyncIterator[None]:
    # Imported here: the relay is a benchmark dependency (the "bench" extra), not ours.
    from pycrdt.websocket import WebsocketServer

    async with (
        WebsocketServer() as relay,
        serve(
            lambda connection: relay.serve(_Channel(connection, ROOM_PATH)),
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
            await stack.enter_async_context(pycrdt.Provider(doc, _Channel(connection, ROOM_PATH)))
        yield


async def relay_once(edits: list[list[bytes]]) -> float:
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in edits]
    async with _relay_room(docs):
        # Warm up as crdtsync's wait_synced does: the room has every client once one edit
        # has reached them all (the providers tell nothing about their first sync).
        docs[0].get("warm-up", type=pycrdt.Text).insert(0, ".")
        await wait_converged(docs, timeout=TIMEOUT)
        return await _time_typing(docs, edits)


def lower_bound_once(edits: list[list[bytes]]) -> float:
    target: pycrdt.Doc[Any] = pycrdt.Doc()
    started = time.perf_counter()
    for updates in edits:
        for update in updates:
            target.apply_update(update)
    return time.perf_counter() - started


class _Channel:
    """A ``websockets`` connection as the ``pycrdt.Channel`` the relay and providers use."""

    def __init__(self, connection: Any, path: str) -> None:
        self._connection = connection
        self._path = path

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

    async def recv(self) -> bytes:
        return bytes(await self._connection.recv())


async def run(options: BenchOptions, progress: Progress) -> BenchResult:
    """Measure the three contenders ``options.runs`` times per room size, in turn.

    Room sizes default to 2, 4 and 8 peers; the top-level ``speedup_vs_relay`` (relay time /
    crdtsync time) and ``ratio_to_lower_bound`` (crdtsync time / lower bound) are for 4 peers
    when measured, else for the first size given.
    """
    sizes = options.peers_or(2, 4, 8)
    result = BenchResult("convergence", {"peers": list(sizes), "edits_per_peer": options.edits})
    for peers in sizes:
        edits = make_edits(peers, options.edits)
        for run in range(1, options.runs + 1):
            times = {
                "crdtsync": await crdtsync_once(edits),
                "relay": await relay_once(edits),
                "lower bound": lower_bound_once(edits),
            }
            for name, seconds in times.items():
                result.add(f"{name} N={peers}", "s", seconds)
            progress(
                f"N={peers} run {run}/{options.runs}: "
                + ", ".join(f"{name} {seconds:.4f} s" for name, seconds in times.items())
            )
        crdtsync, relay, bound = (
            result.median(f"{name} N={peers}") for name in ("crdtsync", "relay", "lower bound")
        )
        result.headline[f"speedup_vs_relay_n{peers}"] = relay / crdtsync
        result.headline[f"ratio_to_lower_bound_n{peers}"] = crdtsync / bound
    headline = HEADLINE_PEERS if HEADLINE_PEERS in sizes else sizes[0]
    result.params["headline_peers"] = headline
    result.lead_with(f"_n{headline}")
    return result
