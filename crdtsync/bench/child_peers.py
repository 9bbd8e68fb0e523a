"""Peers in processes of their own, driven by JSON lines: a Node y-webrtc peer
(``ywebrtc_peer.mjs``) or a crdtsync ``Peer`` (``peer_child.py``), both speaking the protocol
the head of ``ywebrtc_peer.mjs`` describes.

A reader task files each event the child prints under its name, so an awaited event is never
lost to one that came first (a ``complete`` can beat the ``typed`` it follows); a child's
``error`` event, or its exit, fails every wait at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from crdtsync.bench import node
from crdtsync.errors import SyncTimeoutError, TransportError

__all__ = ["NODE_PACKAGES", "ChildPeer"]

NODE_SCRIPT = Path(__file__).with_name("ywebrtc_peer.mjs")
NODE_PACKAGES = ("y-webrtc", "yjs", "@roamhq/wrtc", "ws")
EVENT_MARGIN = 5.0  # seconds a wait gives beyond the child's own timeout: the child's comes first
MAX_EVENT_LINE = 1 << 20  # one event line from a child


class ChildPeer:
    """One peer process: its events by name, its commands, its closing."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, timeout: float) -> None:
        self.name = name
        self._process = process
        self._timeout = timeout + EVENT_MARGIN
        self._events: defaultdict[str, asyncio.Queue[dict[str, Any]]] = defaultdict(asyncio.Queue)
        self._failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(), name=f"read {name}")

    @classmethod
    async def node(cls, name: str, root: Path, settings: dict[str, Any]) -> ChildPeer:
        """A Node y-webrtc peer; ``settings`` as ``ywebrtc_peer.mjs`` takes them."""
        return await cls._launch(
            name, ("node", str(NODE_SCRIPT), str(root), json.dumps(settings)), root, settings
        )

    @classmethod
    async def python(cls, name: str, settings: dict[str, Any]) -> ChildPeer:
        """A crdtsync peer in a Python process of its own (``peer_child.py``)."""
        command = (sys.executable, "-m", "crdtsync.bench.peer_child", json.dumps(settings))
        return await cls._launch(name, command, None, settings)

    @classmethod
    async def _launch(
        cls, name: str, command: tuple[str, ...], cwd: Path | None, settings: dict[str, Any]
    ) -> ChildPeer:
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=MAX_EVENT_LINE,
        )
        return cls(name, process, settings["timeoutMs"] / 1000)

    async def _read(self) -> None:
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            message: dict[str, Any] = json.loads(line)
            if message["event"] == "error":
                self._fail(TransportError(f"{self.name} failed: {message['error']}"))
                return
            self._events[message["event"]].put_nowait(message)
        code = await self._process.wait()
        self._fail(TransportError(f"{self.name} exited with {code}"))

    def _fail(self, error: TransportError) -> None:
        if not self._failed.done():
            self._failed.set_exception(error)
            self._failed.exception()  # retrieved: it is raised by waits, if any comes

    async def event(self, name: str) -> dict[str, Any]:
        """The next event called ``name``; TransportError if the peer failed or exited first."""
        queue = self._events[name]
        if not queue.empty():
            return queue.get_nowait()
        getting = asyncio.ensure_future(queue.get())
        waits: set[asyncio.Future[Any]] = {getting, self._failed}
        try:
            done, _ = await asyncio.wait(
                waits, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            getting.cancel()
        if getting in done:
            return getting.result()
        if self._failed in done:
            self._failed.result()  # raises why
        raise SyncTimeoutError(f"{self.name}: no {name!r} within {self._timeout} s")

    async def send(self, cmd: str, **args: Any) -> None:
        """Write one command line."""
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        await self._process.stdin.drain()

    async def command(self, cmd: str, reply: str, **args: Any) -> dict[str, Any]:
        """Send ``cmd`` and await its ``reply`` event."""
        await self.send(cmd, **args)
        return await self.event(reply)

    async def aclose(self) -> None:
        """Have the peer close and exit; stop it if it does not within ``node.STOP_GRACE``."""
        stdin = self._process.stdin
        assert stdin is not None
        with contextlib.suppress(ConnectionError):
            if self._process.returncode is None:
                stdin.write(b'{"cmd": "close"}\n')
                await stdin.drain()
            stdin.close()
        await node.stop_process(self._process)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
