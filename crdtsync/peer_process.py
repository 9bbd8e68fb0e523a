"""``crdtsync peer``: one collaborator as a process, driven by JSON lines on stdin.

Used by the multi-process tests and handy for trying a room by hand. Each input line is a
JSON object: ``{"append": "text"}`` adds to the shared text, ``{"flush": true}`` waits until
every edit so far is in the store, ``{"report": true}`` prints the peer's state,
``{"quit": true}`` leaves. Each output line is a JSON object: ``{"ready": id}`` once joined,
``{"peers": [...]}`` whenever the linked peers change, ``{"flushed": n}`` after the n-th
flush, and the reports. With ``--store FILE`` the peer keeps its document in that store, so
a restarted process comes back with its edits. With ``--dialect y-webrtc`` it joins a
y-webrtc room: with a store, it keeps a browser room's document while every browser is
closed, and hands it to the next one that opens the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pycrdt

from crdtsync.errors import SyncTimeoutError
from crdtsync.peer import Dialect, Peer

__all__ = ["emit", "read_stdin", "run_peer"]

TEXT = "text"
MAX_COMMAND_SIZE = 16 << 20  # one input line: room for a large paste


def emit(**fields: Any) -> None:
    """Write one JSON line to stdout (the parent reads events line by line)."""
    print(json.dumps(fields), flush=True)


async def read_stdin(limit: int = MAX_COMMAND_SIZE) -> asyncio.StreamReader:
    """This process's stdin as a stream of command lines, read without blocking the loop."""
    reader = asyncio.StreamReader(limit=limit)
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    return reader


async def _report_peers(peer: Peer) -> None:
    while True:
        reported = peer.peers
        emit(peers=sorted(reported))
        with contextlib.suppress(SyncTimeoutError):
            await peer.wait_for(_changed(peer, reported), timeout=3600, what="a change")


def _changed(peer: Peer, reported: frozenset[str]) -> Callable[[], bool]:
    return lambda: peer.peers != reported


async def run_peer(
    signaling: str,
    room: str,
    host_addresses: list[str] | None,
    store: Path | None,
    *,
    dialect: Dialect = "crdtsync",
    password: str | None = None,
) -> int:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get(TEXT, type=pycrdt.Text)
    commands = await read_stdin()
    flushes = 0
    async with Peer(
        doc,
        room=room,
        signaling=signaling,
        host_addresses=host_addresses,
        store=store,
        dialect=dialect,
        password=password,
    ) as peer:
        emit(ready=peer.id)
        watcher = asyncio.create_task(_report_peers(peer))
        try:
            while line := await commands.readline():  # empty: stdin closed
                try:
                    command = json.loads(line)
                    if not isinstance(command, dict):
                        raise TypeError("a command is a JSON object")
                except (ValueError, TypeError) as exc:
                    emit(error=f"bad command: {exc}")
                    continue
                if "append" in command:
                    text.insert(len(text), str(command["append"]))
                if command.get("flush"):
                    await peer.flush()
                    flushes += 1
                    emit(flushed=flushes)
                if command.get("report"):
                    emit(
                        report={
                            "id": peer.id,
                            "text": str(text),
                            "peers": sorted(peer.peers),
                            "congested": sorted(peer.congested),
                            "bytes_sent": peer.bytes_sent,
                        }
                    )
                if command.get("quit"):
                    break
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return 0
