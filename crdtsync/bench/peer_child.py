"""A crdtsync ``Peer`` in a process of its own, for the benchmarks that give each peer one
(as y-webrtc gives each Node peer one): ``python -m crdtsync.bench.peer_child SETTINGS``.

It speaks the JSON-line protocol of ``ywebrtc_peer.mjs`` (see its head), always deferred:
it prints ``ready``, joins on ``join`` and then obeys ``linked``, ``load``, ``type``,
``watch``, ``insert``, ``state`` and ``close``. SETTINGS is a JSON object: ``room``, ``signaling``,
``timeoutMs`` and ``dialect`` (``"crdtsync"`` or ``"y-webrtc"``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pycrdt

from crdtsync.bench.rooms import LOOPBACK
from crdtsync.bench.wire import WireCount, counting_sends
from crdtsync.peer import Peer
from crdtsync.peer_process import emit, read_stdin

__all__ = ["main"]

COMMANDS = frozenset({"join", "linked", "load", "type", "watch", "insert", "state"})  # and close


def _now_ms() -> float:
    """Wall clock in ms, as Node's ``performance.timeOrigin + performance.now()``."""
    return time.time() * 1000


class _Child:
    """The peer, its text, and the checks waiting on a change of the text."""

    def __init__(self, settings: dict[str, Any], wire: WireCount) -> None:
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.text = self.doc.get("text", type=pycrdt.Text)
        self.peer = Peer(
            self.doc,
            room=settings["room"],
            signaling=settings["signaling"],
            dialect=settings["dialect"],
            host_addresses=LOOPBACK,
        )
        self.timeout: float = settings["timeoutMs"] / 1000
        self.wire = wire
        self._loop = asyncio.get_running_loop()
        self._on_change: list[Callable[[float], bool]] = []
        self._loaded: list[bytes] = []
        self._length = 0
        self.doc.observe(self._observed)

    def _observed(self, _event: pycrdt.TransactionEvent) -> None:
        # Stamped now; the text is read once the transaction is over.
        self._loop.call_soon(self._changed, _now_ms())

    def _changed(self, stamp: float) -> None:
        self._on_change = [check for check in self._on_change if not check(stamp)]

    async def join(self) -> None:
        await self.peer.start()
        emit(event="opened", t=_now_ms())

    async def linked(self, peers: int) -> None:
        await self.peer.wait_for_peers(peers, timeout=self.timeout)
        await self.peer.wait_synced(timeout=self.timeout)
        emit(event="linked", t=_now_ms())

    async def load(self, updates: list[str], length: int) -> None:
        self._loaded = [base64.b64decode(update) for update in updates]
        self._length = length
        emit(event="loaded")

    async def type(self) -> None:
        length = self._length

        def complete(stamp: float) -> bool:
            if len(self.text) < length:
                return False
            emit(event="complete", t=stamp)
            return True

        self._on_change.append(complete)
        for update in self._loaded:
            self.doc.apply_update(update)
            await asyncio.sleep(0)  # one edit per event-loop tick
        emit(event="typed")

    async def watch(self) -> None:
        seen = len(self.text)

        def report(stamp: float) -> bool:
            nonlocal seen
            if len(self.text) != seen:
                seen = len(self.text)
                emit(event="seen", length=seen, t=stamp)
            return False  # watches until the end

        self._on_change.append(report)
        emit(event="watching")

    async def insert(self, text: str) -> None:
        stamp = _now_ms()
        self.text.insert(len(self.text), text)
        emit(event="inserted", t=stamp)

    async def state(self) -> None:
        emit(
            event="state",
            length=len(self.text),
            peers=len(self.peer.peers),
            bytesSent=self.wire.bytes,
            messagesSent=self.wire.messages,
            cpuMs=time.process_time() * 1000,
        )


async def _serve(settings: dict[str, Any]) -> None:
    with counting_sends() as wire:
        child = _Child(settings, wire)
        commands = await read_stdin()
        emit(event="ready")
        tasks: set[asyncio.Task[None]] = set()
        try:
            while line := await commands.readline():
                command = json.loads(line)
                name = command.pop("cmd")
                if name == "close":
                    break
                if name not in COMMANDS:
                    emit(event="error", error=f"unknown command {name!r}")
                    continue
                # Each command runs as a task, as Node runs each line's handler: a `linked`
                # that waits does not hold up the next line.
                task = asyncio.create_task(getattr(child, name)(**command))
                tasks.add(task)
                task.add_done_callback(_reported(tasks))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await child.peer.aclose()


def _reported(tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    """A done-callback that forgets the task and turns its failure into an error event."""

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            emit(event="error", error=repr(task.exception()))

    return done


def main() -> None:
    asyncio.run(_serve(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
