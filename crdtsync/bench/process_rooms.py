"""Rooms whose peers each run in a process of their own: crdtsync peers (``peer_child.py``),
y-webrtc peers (Node, ``ywebrtc_peer.mjs``), or both in one room (the y-webrtc dialect).

A y-webrtc ``WebrtcProvider`` holds one document per room and process, so a y-webrtc room of
N peers is N Node processes; ``rooms.py`` keeps all crdtsync peers in this one process. These
rooms put crdtsync peers one per process too, so that each layout can be compared with both.

The peers are started and have loaded their modules before any clock runs. Processes stamp
what they see with the wall clock (``time.time()``; Node's ``performance.timeOrigin +
performance.now()``): a figure is the span from this process's stamp before its first
command to the last stamp a peer reports. Traffic (data-channel messages and bytes sent, CPU
time) is summed over every peer process, from just before the first command until every
text is complete and no counter moved for ``QUIET_WINDOW``.

Node's WebRTC gathers candidates on every interface: rooms with Node peers run only where
``lo`` is the only one (``scripts/loopback-netns``), and need ``npm ci`` done (node_modules).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crdtsync.bench import node
from crdtsync.bench.child_peers import NODE_PACKAGES, ChildPeer
from crdtsync.bench.report import Progress
from crdtsync.errors import ConfigError, SyncTimeoutError
from crdtsync.peer import Dialect
from crdtsync.signaling.server import SignalingServer

__all__ = [
    "LAYOUTS",
    "Contender",
    "Layout",
    "ProcessRoom",
    "Traffic",
    "node_root",
    "process_contenders",
    "process_room",
]

# No counter moved for this long: the room (or interop.py's pair) is quiet. A measurement
# choice: an update and its echo cross loopback in about a millisecond, and no peer sends on
# a timer more often than every second or so (heartbeats on a quiet link, awareness renewal).
QUIET_WINDOW = 0.25


def node_root(benchmark: str, command: str, packages: Sequence[str] = NODE_PACKAGES) -> Path:
    """The folder whose node_modules holds the Node peer's ``packages``, checked to run
    here: ConfigError, saying what to do (``command``), without node, node_modules or a
    loopback-only network."""
    interfaces = sorted(name for _, name in socket.if_nameindex())
    if interfaces != ["lo"]:
        raise ConfigError(
            f"{benchmark} runs Node WebRTC peers, which gather candidates on every interface "
            f"(here {', '.join(interfaces)}): run it in a loopback-only network namespace, "
            f"`{command}`"
        )
    return node.find_node_modules(packages, benchmark)


@dataclass(frozen=True, slots=True)
class Layout:
    """Who is in a room: ``python`` crdtsync peers and ``node`` y-webrtc peers, one process
    each; crdtsync peers speak the y-webrtc dialect whenever a Node peer is in the room."""

    python: int
    node: int

    @property
    def dialect(self) -> Dialect:
        return "y-webrtc" if self.node else "crdtsync"

    @property
    def size(self) -> int:
        return self.python + self.node


@dataclass(frozen=True, slots=True)
class Traffic:
    """What a room's processes spent on one phase."""

    seconds: float  # wall clock, until the last peer held everything
    messages: int  # data-channel messages sent, every peer summed
    bytes: int  # their payload bytes
    cpu_seconds: float  # user + system CPU time of every peer process


class ProcessRoom:
    """Started peer processes of one room; ``peers[i]`` types ``edits[i]``."""

    def __init__(self, peers: list[ChildPeer], timeout: float) -> None:
        self.peers = peers
        self._timeout = timeout

    async def _all(self, cmd: str, reply: str) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(peer.command(cmd, reply) for peer in self.peers)))

    async def link(self) -> Traffic:
        """Have the peers join in turn, each once the one before has subscribed (opened its
        signaling); the time from the first join until the last is linked with all, synced,
        and what every process sent and spent meanwhile.

        In turn, not at once: y-webrtc peers announced together each dial the others, and
        when two offers cross a pair may never connect (seen in 1 of 5 rooms of 4 Node peers
        started at once, here); in turn, the newcomer is dialed by those in the room.
        """
        others = len(self.peers) - 1
        before = _summed(await self._all("state", "state"))
        started = _now_ms()
        for peer in self.peers:
            await peer.command("join", "opened")
        for peer in self.peers:
            await peer.send("linked", peers=others)
        linked = await asyncio.gather(*(peer.event("linked") for peer in self.peers))
        seconds = float(max(event["t"] for event in linked) - started) / 1000
        return _spent(seconds, before, _summed(await self._all("state", "state")))

    async def converge(self, edits: Sequence[Sequence[bytes]]) -> Traffic:
        """Each peer types its updates, one per event-loop turn; until every text holds all."""
        length = sum(map(len, edits))  # one character per update
        await asyncio.gather(
            *(
                peer.command("load", "loaded", updates=_encoded(updates), length=length)
                for peer, updates in zip(self.peers, edits, strict=True)
            )
        )
        before = await self._settled(None)
        started = _now_ms()
        for peer in self.peers:
            await peer.send("type")
        completed = await asyncio.gather(*(peer.event("complete") for peer in self.peers))
        await asyncio.gather(*(peer.event("typed") for peer in self.peers))
        after = await self._settled(length)
        return _spent((max(event["t"] for event in completed) - started) / 1000, before, after)

    async def latencies(self, editors: Sequence[int], quiet_gap: float) -> list[float]:
        """Each of ``editors`` in turn appends one character; the delays (s) until each other
        peer saw it. A first round, by the first editor, goes untimed (as in latency.py)."""
        # Every peer watches before the first edit: one seen before would go unreported.
        await self._all("watch", "watching")
        delays: list[float] = []
        for made, editor in enumerate([editors[0], *editors], start=1):
            inserted = (await self.peers[editor].command("insert", "inserted", text="x"))["t"]
            for index, peer in enumerate(self.peers):
                if index == editor:
                    continue
                while (seen := await peer.event("seen"))["length"] < made:
                    pass  # an earlier length: a change this peer saw before
                if made > 1:
                    delays.append((seen["t"] - inserted) / 1000)
            while (await self.peers[editor].event("seen"))["length"] < made:
                pass  # its own insert, seen where it was made, drained too
            await asyncio.sleep(quiet_gap)  # pacing, not synchronisation: see latency.py
        return delays

    async def _settled(self, length: int | None) -> Traffic:
        """The counters summed over every peer, once every text is ``length`` long (None: any)
        and none moved for ``QUIET_WINDOW``."""
        try:
            async with asyncio.timeout(self._timeout):
                before = await self._all("state", "state")
                while True:
                    await asyncio.sleep(QUIET_WINDOW)  # a poll of other processes' counters
                    after = await self._all("state", "state")
                    moved = any(
                        (a["messagesSent"], a["length"]) != (b["messagesSent"], b["length"])
                        for a, b in zip(after, before, strict=True)
                    )
                    if not moved and (length is None or all(s["length"] == length for s in after)):
                        return _summed(after)
                    before = after
        except TimeoutError as exc:
            raise SyncTimeoutError(
                f"texts of length {length}, and a quiet room, not reached within {self._timeout} s"
            ) from exc


@contextlib.asynccontextmanager
async def process_room(
    layout: Layout, signaling: str, *, root: Path | None, timeout: float
) -> AsyncIterator[ProcessRoom]:
    """Start ``layout``'s peer processes for a fresh room of ``signaling`` (crdtsync peers
    first), each ready for commands; ``root`` holds node_modules (needed for Node peers).
    Every process is closed on exit."""
    if layout.node and root is None:
        raise ConfigError("a room with Node peers needs the folder holding node_modules")
    settings = {
        "room": f"bench-{secrets.token_hex(4)}",
        "signaling": signaling,
        "timeoutMs": int(timeout * 1000),
        "deferred": True,
        "dialect": layout.dialect,
    }
    async with contextlib.AsyncExitStack() as stack:
        peers: list[ChildPeer] = []
        for index in range(layout.size):
            if index < layout.python:
                peer = await ChildPeer.python(f"crdtsync peer {index}", settings)
            else:
                assert root is not None  # checked above
                peer = await ChildPeer.node(f"y-webrtc peer {index}", root, settings)
            stack.push_async_callback(peer.aclose)
            peers.append(peer)
        await asyncio.gather(*(peer.event("ready") for peer in peers))
        yield ProcessRoom(peers, timeout)


def _summed(states: list[dict[str, Any]]) -> Traffic:
    """The counters of every peer's ``state`` event, summed (no time: ``seconds`` is 0)."""
    return Traffic(
        seconds=0.0,
        messages=int(sum(state["messagesSent"] for state in states)),
        bytes=int(sum(state["bytesSent"] for state in states)),
        cpu_seconds=sum(state["cpuMs"] for state in states) / 1000,
    )


def _spent(seconds: float, before: Traffic, after: Traffic) -> Traffic:
    return Traffic(
        seconds,
        after.messages - before.messages,
        after.bytes - before.bytes,
        after.cpu_seconds - before.cpu_seconds,
    )


def _encoded(updates: Sequence[bytes]) -> list[str]:
    return [base64.b64encode(update).decode() for update in updates]


def _now_ms() -> float:
    """Wall clock in ms, as the peer processes stamp their events."""
    return time.time() * 1000


@dataclass(frozen=True, slots=True)
class Contender:
    """A kind of room of processes, and the signaling server that introduces its peers."""

    name: str
    layout: Callable[[int], Layout]  # who is in a room of N
    signaling: str
    root: Path | None  # holds node_modules, for Node peers

    def room(self, peers: int, timeout: float) -> AbstractAsyncContextManager[ProcessRoom]:
        """A fresh room of ``peers``, as ``process_room``."""
        return process_room(self.layout(peers), self.signaling, root=self.root, timeout=timeout)


# How each contender's peers run, for the JSON and the README; the in-process ones too.
LAYOUTS = {
    "crdtsync": "every peer in the benchmark's one Python process (one event loop)",
    "crdtsync, process per peer": "one Python process per peer; our server in the benchmark's",
    "y-webrtc": "one Node process per peer; y-webrtc's bin/server.js in another",
    "mixed": "N//2 crdtsync peers (y-webrtc dialect) and the rest y-webrtc peers, one process "
    "each; y-webrtc's bin/server.js",
}


async def process_contenders(
    stack: contextlib.AsyncExitStack, benchmark: str, command: str, progress: Progress
) -> tuple[list[Contender], str | None]:
    """Start the signaling servers (closed with ``stack``) of every contender of processes
    that can run here: crdtsync with a process per peer always, y-webrtc and the mixed room
    when Node can (else the one-line reason why not, told to ``progress`` and returned)."""
    ours = await stack.enter_async_context(SignalingServer())
    contenders = [Contender("crdtsync, process per peer", _python_only, ours.url, None)]
    try:
        root = node_root(f"{benchmark} (its y-webrtc and mixed contenders)", command)
    except ConfigError as exc:
        progress(f"skipped: {exc}")
        return contenders, str(exc)
    theirs = await stack.enter_async_context(node.ywebrtc_server(root))
    contenders.append(Contender("y-webrtc", _node_only, theirs.url, root))
    contenders.append(Contender("mixed", _half_each, theirs.url, root))
    return contenders, None


def _python_only(peers: int) -> Layout:
    return Layout(python=peers, node=0)


def _node_only(peers: int) -> Layout:
    return Layout(python=0, node=peers)


def _half_each(peers: int) -> Layout:
    return Layout(python=peers // 2, node=peers - peers // 2)
