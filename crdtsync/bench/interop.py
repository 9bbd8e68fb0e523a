"""Interop: a Python peer and a Node y-webrtc peer, against two Node peers (y-webrtc's own).

Each pair joins one room of y-webrtc's own signaling server (``bin/server.js``, started once
per benchmark run) on 127.0.0.1. Node peers are unmodified y-webrtc over @roamhq/wrtc, one
process each (``ywebrtc_peer.mjs``); the Python peer is ``Peer(dialect="y-webrtc")``. Three
contenders, in alternating order in each run, whoever is in the room first offering:

- ``node-node``: a Node peer in the room, a Node newcomer;
- ``python-answers``: a Node peer in the room, a Python newcomer (the Node peer offers);
- ``python-offers``: a Python peer in the room, a Node newcomer.

Time: the peer in the room has subscribed and typed its part, the newcomer typed its own
before it starts; the clock runs from the newcomer's signaling open (Node: the WebSocket's
``connect``; Python: ``await peer.start()`` returning, once subscribed) until both peers hold
both parts. The two ends are different processes, so these are wall-clock stamps
(``time.time()``; ``performance.timeOrigin + performance.now()`` in Node). Each pair is
timed again, right after, through our ``SignalingServer`` (the ``, our signaling`` series).

Bytes on the wire: then, once the link is quiet, each peer types the same ``EDITS`` inserts,
one per event-loop turn; counted are the data-channel payload bytes both peers sent from
then until both texts are complete and no counter moved for ``QUIET_WINDOW`` (Node: the
``bytesSent`` of every 'data-channel' stat of its RTCPeerConnection; Python:
``Peer.bytes_sent``). y-webrtc sends every update it applies to every peer, its source
included; we send only our own, and merge those of one batching window into one message, so
the bytes ratio holds both effects.

Node's WebRTC gathers candidates on every interface: this runs only where ``lo`` is the only
one (``scripts/loopback-netns``), and needs ``npm ci`` done (node_modules).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import pycrdt

from crdtsync.bench import node
from crdtsync.bench.child_peers import NODE_PACKAGES, ChildPeer
from crdtsync.bench.process_rooms import QUIET_WINDOW, node_root
from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.bench.rooms import LOOPBACK
from crdtsync.errors import SyncTimeoutError
from crdtsync.peer import Peer
from crdtsync.signaling.server import SignalingServer

__all__ = ["find_node_modules", "preflight", "run"]

EDITS = 200  # inserts per peer in the bytes phase
PIECE = "abc"  # what each insert types
PARTS = ("in-the-room;", "newcomer;")  # what the peer in the room and the newcomer type first
TIMEOUT = 20.0  # for a pair to converge, for a phase to settle: a run takes well under 1 s
COMMAND = "scripts/loopback-netns .venv/bin/crdtsync bench interop"


def find_node_modules() -> Path:
    """The folder holding node_modules with the Node peer's packages, or ConfigError."""
    return node.find_node_modules(NODE_PACKAGES, "bench interop")


def preflight() -> Path:
    """Check that Node peers can run here; the folder holding node_modules, or ConfigError."""
    return node_root("bench interop", COMMAND, NODE_PACKAGES)


# -- the two kinds of peer ------------------------------------------------------------------------


class _Side(Protocol):
    """What the bytes phase needs of a peer, Node or Python."""

    async def edit(self, count: int, piece: str) -> None: ...

    async def state(self) -> tuple[int, int]:
        """(length of the text, data-channel bytes sent so far)."""
        ...


class _NodePeer:
    """One ``ywebrtc_peer.mjs`` process, as the bytes phase drives it."""

    def __init__(self, child: ChildPeer) -> None:
        self._child = child

    @classmethod
    async def launch(cls, root: Path, url: str, room: str, part: str) -> _NodePeer:
        settings = {
            "room": room,
            "signaling": url,
            "part": part,
            "expect": list(PARTS),
            "timeoutMs": int(TIMEOUT * 1000),
        }
        return cls(await ChildPeer.node("node peer", root, settings))

    async def event(self, name: str) -> dict[str, Any]:
        return await self._child.event(name)

    async def edit(self, count: int, piece: str) -> None:
        await self._child.command("edit", "edited", count=count, text=piece)

    async def state(self) -> tuple[int, int]:
        state = await self._child.command("state", "state")
        return state["length"], state["bytesSent"]

    async def aclose(self) -> None:
        await self._child.aclose()


class _PythonPeer:
    """A ``Peer(dialect="y-webrtc")`` and the moment its text first held every part."""

    def __init__(self, url: str, room: str, part: str) -> None:
        doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.text = doc.get("text", type=pycrdt.Text)
        self.text.insert(0, part)
        self.peer = Peer(doc, room=room, signaling=url, dialect="y-webrtc", host_addresses=LOOPBACK)
        self._loop = asyncio.get_running_loop()
        self.converged: asyncio.Future[float] = self._loop.create_future()
        self._subscription = doc.observe(self._observed)

    def _observed(self, _event: pycrdt.TransactionEvent) -> None:
        # Stamped now; the text is read once the transaction is over.
        self._loop.call_soon(self._check, _now_ms())

    def _check(self, stamp: float) -> None:
        if not self.converged.done() and all(part in str(self.text) for part in PARTS):
            self.converged.set_result(stamp)

    async def start(self) -> float:
        """Join the room; the moment it is subscribed."""
        await self.peer.start()
        return _now_ms()

    async def converged_at(self) -> float:
        try:
            return await asyncio.wait_for(asyncio.shield(self.converged), TIMEOUT)
        except TimeoutError as exc:
            raise SyncTimeoutError(f"python peer: not converged within {TIMEOUT} s") from exc

    async def edit(self, count: int, piece: str) -> None:
        for _ in range(count):
            self.text.insert(0, piece)
            await asyncio.sleep(0)

    async def state(self) -> tuple[int, int]:
        return len(self.text), self.peer.bytes_sent

    async def aclose(self) -> None:
        self.peer.doc().unobserve(self._subscription)
        await self.peer.aclose()


def _now_ms() -> float:
    """Wall clock in ms, as Node's ``performance.timeOrigin + performance.now()``."""
    return time.time() * 1000


# -- one run of one contender ---------------------------------------------------------------------


async def _settled(sides: tuple[_Side, _Side], length: int | None) -> int:
    """Bytes both sides sent so far, once each text is ``length`` long (None: any) and no byte
    counter moved for ``QUIET_WINDOW``."""
    try:
        async with asyncio.timeout(TIMEOUT):
            before = [await side.state() for side in sides]
            while True:
                await asyncio.sleep(QUIET_WINDOW)
                after = [await side.state() for side in sides]
                if after == before and (length is None or all(n == length for n, _ in after)):
                    return sum(sent for _, sent in after)
                before = after
    except TimeoutError as exc:
        raise SyncTimeoutError(
            f"texts of length {length}, and a quiet link, not reached within {TIMEOUT} s"
        ) from exc


async def _wire_bytes(sides: tuple[_Side, _Side]) -> int:
    """Data-channel bytes both sides send for ``EDITS`` inserts each (see the module doc)."""
    baseline = await _settled(sides, None)
    await asyncio.gather(*(side.edit(EDITS, PIECE) for side in sides))
    length = sum(map(len, PARTS)) + 2 * EDITS * len(PIECE)
    return await _settled(sides, length) - baseline


Pair = tuple[_Side, _Side]  # the peer in the room, the newcomer
# (root, signaling URL, room, where to push the closing of its peers) -> (ms, the two peers)
Once = Callable[[Path, str, str, contextlib.AsyncExitStack], Awaitable[tuple[float, Pair]]]


async def node_node(
    root: Path, url: str, room: str, stack: contextlib.AsyncExitStack
) -> tuple[float, Pair]:
    """Ms from the newcomer's signaling open until both hold both parts, of two Node peers."""
    first = await _NodePeer.launch(root, url, room, PARTS[0])
    stack.push_async_callback(first.aclose)
    await first.event("opened")
    newcomer = await _NodePeer.launch(root, url, room, PARTS[1])
    stack.push_async_callback(newcomer.aclose)
    opened = (await newcomer.event("opened"))["t"]
    done = max((await newcomer.event("converged"))["t"], (await first.event("converged"))["t"])
    return done - opened, (first, newcomer)


async def python_answers(
    root: Path, url: str, room: str, stack: contextlib.AsyncExitStack
) -> tuple[float, Pair]:
    """As ``node_node``, the newcomer a Python peer: the Node peer in the room offers to it."""
    first = await _NodePeer.launch(root, url, room, PARTS[0])
    stack.push_async_callback(first.aclose)
    await first.event("opened")
    newcomer = _PythonPeer(url, room, PARTS[1])
    stack.push_async_callback(newcomer.aclose)
    opened = await newcomer.start()
    done = max(await newcomer.converged_at(), (await first.event("converged"))["t"])
    return done - opened, (first, newcomer)


async def python_offers(
    root: Path, url: str, room: str, stack: contextlib.AsyncExitStack
) -> tuple[float, Pair]:
    """As ``node_node``, the peer in the room a Python peer: it offers to the Node newcomer."""
    first = _PythonPeer(url, room, PARTS[0])
    stack.push_async_callback(first.aclose)
    await first.start()
    newcomer = await _NodePeer.launch(root, url, room, PARTS[1])
    stack.push_async_callback(newcomer.aclose)
    opened = (await newcomer.event("opened"))["t"]
    done = max((await newcomer.event("converged"))["t"], await first.converged_at())
    return done - opened, (first, newcomer)


CONTENDERS: dict[str, Once] = {
    "node-node": node_node,
    "python-answers": python_answers,
    "python-offers": python_offers,
}


async def _measure(once: Once, root: Path, url: str, *, wire: bool) -> tuple[float, int | None]:
    """One pair in a fresh room: (ms to converge, wire bytes if ``wire`` else None)."""
    room = f"interop-{secrets.token_hex(4)}"
    async with contextlib.AsyncExitStack() as stack:
        elapsed, pair = await once(root, url, room, stack)
        return elapsed, await _wire_bytes(pair) if wire else None


async def run(options: BenchOptions, progress: Progress) -> BenchResult:
    """Each contender once per run (``options.runs``), in alternating order, through y-webrtc's
    server and, right after, through ours (time only).

    Series: each contender's time (ms) through either server, and its wire bytes. Headline:
    ``ratio_python_answers_to_node_node`` and ``ratio_python_offers_to_node_node`` (median
    times over node-node's, through y-webrtc's server), and
    ``wire_bytes_ratio_python_node_to_node_node`` (the median bytes of both Python-Node
    pairs' runs over node-node's).
    """
    root = preflight()
    result = BenchResult(
        "interop",
        {
            "signaling": "y-webrtc bin/server.js; 'our signaling': crdtsync SignalingServer",
            "edits": EDITS,
            "piece": PIECE,
            "quiet_window_ms": QUIET_WINDOW * 1000,
        },
    )
    async with node.ywebrtc_server(root) as theirs, SignalingServer("127.0.0.1", 0) as ours:
        for run in range(1, options.runs + 1):
            order = list(CONTENDERS) if run % 2 else list(reversed(CONTENDERS))
            figures: dict[str, tuple[float, int | None]] = {}
            ours_ms: dict[str, float] = {}
            for name in order:
                figures[name] = await _measure(CONTENDERS[name], root, theirs.url, wire=True)
                ours_ms[name], _ = await _measure(CONTENDERS[name], root, ours.url, wire=False)
            for name in CONTENDERS:
                result.add(name, "ms", figures[name][0])
            for name in CONTENDERS:
                result.add(f"{name}, our signaling", "ms", ours_ms[name])
            for name in CONTENDERS:
                result.add(f"{name} wire", "bytes", figures[name][1] or 0)
            progress(
                f"run {run}/{options.runs}: "
                + ", ".join(
                    f"{name} {figures[name][0]:.1f} ms ({ours_ms[name]:.1f} ms ours) "
                    f"{figures[name][1]} B"
                    for name in CONTENDERS
                )
            )
    node_node_ms = result.median("node-node")
    for name in ("python-answers", "python-offers"):
        key = f"ratio_{name.replace('-', '_')}_to_node_node"
        result.headline[key] = result.median(name) / node_node_ms
    python_node = [
        *result.series["python-answers wire"].samples,
        *result.series["python-offers wire"].samples,
    ]
    result.headline["wire_bytes_ratio_python_node_to_node_node"] = statistics.median(
        python_node
    ) / result.median("node-node wire")
    return result
