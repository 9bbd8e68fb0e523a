"""Convergence: N peers each make M concurrent small edits; time until every replica is equal.

Three contenders, measured in turn in each run, in one process on 127.0.0.1:

- crdtsync: ``Peer``s over real aiortc data channels, introduced by our signaling server;
- the server relay: pycrdt-websocket's ``WebsocketServer`` with ``pycrdt.Provider`` clients
  over ``websockets`` (compression off), the usual way to sync pycrdt documents;
- the lower bound: applying all N*M updates to one ``Doc``, with no network at all.

Each peer types one character per edit, one edit per event-loop tick, as a person typing
fast would. The clock starts when typing starts and stops when all documents are equal.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pycrdt
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from crdtsync.errors import ConfigError
from crdtsync.peer import Peer
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing.convergence import wait_converged

__all__ = ["ConvergenceResult", "run_convergence", "table"]

LOOPBACK = ("127.0.0.1",)
TIMEOUT = 120.0  # for linking, and for converging
ROOM_PATH = "/bench"  # the relay's room: every client is in the same one


@dataclass(frozen=True, slots=True)
class ConvergenceResult:
    """Seconds per run for each contender; the JSON the command writes."""

    peers: int
    edits: int
    crdtsync: list[float]
    relay: list[float]
    lower_bound: list[float]

    def to_json(self) -> dict[str, Any]:
        contenders = {
            "crdtsync": self.crdtsync,
            "relay": self.relay,
            "lower_bound": self.lower_bound,
        }
        medians = {name: statistics.median(times) for name, times in contenders.items()}
        return {
            "benchmark": "convergence",
            "peers": self.peers,
            "edits_per_peer": self.edits,
            "runs": len(self.crdtsync),
            "speedup_vs_relay": medians["relay"] / medians["crdtsync"],
            "ratio_to_lower_bound": medians["crdtsync"] / medians["lower_bound"],
            "seconds": {
                name: {"median": medians[name], "min": min(times), "max": max(times)}
                for name, times in contenders.items()
            },
            "machine": f"{platform.machine()} {platform.system()}, "
            f"Python {platform.python_version()}, {os.cpu_count()} cores",
        }


def _mark(peer: int) -> str:
    """The character peer number ``peer`` types (a, b, c, ...)."""
    return chr(ord("a") + peer % 26)


async def _type(text: pycrdt.Text, edits: int, mark: str) -> None:
    for _ in range(edits):
        text.insert(len(text), mark)
        await asyncio.sleep(0)  # one edit per event-loop tick


async def _time_typing(docs: Sequence[pycrdt.Doc[Any]], edits: int) -> float:
    texts = [doc.get("text", type=pycrdt.Text) for doc in docs]
    started = time.perf_counter()
    await asyncio.gather(*(_type(text, edits, _mark(i)) for i, text in enumerate(texts)))
    await wait_converged(docs, timeout=TIMEOUT)
    return time.perf_counter() - started


async def crdtsync_once(peers: int, edits: int) -> float:
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(peers)]
    async with SignalingServer() as server, AsyncExitStack() as stack:
        linked = [
            await stack.enter_async_context(
                Peer(doc, room="bench", signaling=server.url, host_addresses=LOOPBACK)
            )
            for doc in docs
        ]
        for peer in linked:
            await peer.wait_for_peers(peers - 1, timeout=TIMEOUT)
            await peer.wait_synced(timeout=TIMEOUT)
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


async def relay_once(peers: int, edits: int) -> float:
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(peers)]
    async with _relay_room(docs):
        # Warm up as crdtsync's wait_synced does: the room has every client once one edit
        # has reached them all (the providers tell nothing about their first sync).
        docs[0].get("warm-up", type=pycrdt.Text).insert(0, ".")
        await wait_converged(docs, timeout=TIMEOUT)
        return await _time_typing(docs, edits)


def table(result: dict[str, Any]) -> str:
    """The JSON of a result as a small text table."""
    lines = [f"{'contender':<12} {'median s':>10} {'min s':>10} {'max s':>10}"]
    for name, seconds in result["seconds"].items():
        lines.append(
            f"{name:<12} {seconds['median']:>10.4f} {seconds['min']:>10.4f} {seconds['max']:>10.4f}"
        )
    lines.append(
        f"speedup vs relay: {result['speedup_vs_relay']:.2f}x; "
        f"ratio to lower bound: {result['ratio_to_lower_bound']:.1f}x"
    )
    return "\n".join(lines)


def lower_bound_once(peers: int, edits: int) -> float:
    updates: list[bytes] = []
    for index in range(peers):
        doc: pycrdt.Doc[Any] = pycrdt.Doc()
        doc.observe(lambda event: updates.append(event.update))
        text = doc.get("text", type=pycrdt.Text)
        for _ in range(edits):
            text.insert(len(text), _mark(index))
    target: pycrdt.Doc[Any] = pycrdt.Doc()
    started = time.perf_counter()
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


async def run_convergence(
    peers: int, edits: int, runs: int, progress: Callable[[str], None]
) -> ConvergenceResult:
    """Measure the three contenders ``runs`` times, in turn, calling ``progress`` after each."""
    if peers < 2 or edits < 1 or runs < 1:
        raise ConfigError(
            f"need --peers >= 2, --edits >= 1, --runs >= 1 (got {peers}, {edits}, {runs})"
        )
    result = ConvergenceResult(peers, edits, [], [], [])
    for run in range(1, runs + 1):
        result.crdtsync.append(await crdtsync_once(peers, edits))
        result.relay.append(await relay_once(peers, edits))
        result.lower_bound.append(lower_bound_once(peers, edits))
        progress(
            f"run {run}/{runs}: crdtsync {result.crdtsync[-1]:.3f} s, "
            f"relay {result.relay[-1]:.3f} s, lower bound {result.lower_bound[-1]:.4f} s"
        )
    return result
