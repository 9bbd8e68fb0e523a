"""``crdtsync peer``: one collaborator as a process, driven by JSON lines on stdin.

Used by the multi-process tests and handy for trying a room by hand. Each input line is a
JSON object: ``{"append": "text"}`` adds to the shared text, ``{"report": true}`` prints the
peer's state, ``{"quit": true}`` leaves. Each output line is a JSON object: ``{"ready": id}``
once joined, ``{"peers": [...]}`` whenever the linked peers change, and the reports. With
``--state FILE`` the document is loaded from, and saved to, that file, so a restarted
process comes back with its edits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pycrdt

from crdtsync.errors import SyncTimeoutError
from crdtsync.peer import Peer

__all__ = ["run_peer"]

TEXT = "text"
MAX_COMMAND_SIZE = 16 << 20  # one input line: room for a large paste


def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _save(doc: pycrdt.Doc[Any], path: Path) -> None:
    """Write the whole document, atomically: a kill mid-write leaves the old file."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(doc.get_update())
    os.replace(temporary, path)


def _open_doc(state: Path | None) -> pycrdt.Doc[Any]:
    """The document, as last saved; saved again after every tick that changed it."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    if state is None:
        return doc
    if state.exists():
        doc.apply_update(state.read_bytes())
    pending: list[asyncio.Handle] = []
    loop = asyncio.get_running_loop()

    def save() -> None:
        pending.clear()
        _save(doc, state)

    def changed(_event: pycrdt.TransactionEvent) -> None:
        # Not from inside the observer: the doc cannot be read while it commits.
        if not pending:
            pending.append(loop.call_soon(save))

    doc.observe(changed)
    return doc


async def _report_peers(peer: Peer) -> None:
    while True:
        reported = peer.peers
        _emit(peers=sorted(reported))
        with contextlib.suppress(SyncTimeoutError):
            await peer.wait_for(_changed(peer, reported), timeout=3600, what="a change")


def _changed(peer: Peer, reported: frozenset[str]) -> Callable[[], bool]:
    return lambda: peer.peers != reported


async def run_peer(
    signaling: str, room: str, host_addresses: list[str] | None, state: Path | None
) -> int:
    doc = _open_doc(state)
    text = doc.get(TEXT, type=pycrdt.Text)
    commands = asyncio.StreamReader(limit=MAX_COMMAND_SIZE)
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(commands), sys.stdin
    )
    async with Peer(doc, room=room, signaling=signaling, host_addresses=host_addresses) as peer:
        _emit(ready=peer.id)
        watcher = asyncio.create_task(_report_peers(peer))
        try:
            while line := await commands.readline():  # empty: stdin closed
                try:
                    command = json.loads(line)
                    if not isinstance(command, dict):
                        raise TypeError("a command is a JSON object")
                except (ValueError, TypeError) as exc:
                    _emit(error=f"bad command: {exc}")
                    continue
                if "append" in command:
                    text.insert(len(text), str(command["append"]))
                if command.get("report"):
                    _emit(
                        report={
                            "id": peer.id,
                            "text": str(text),
                            "peers": sorted(peer.peers),
                            "congested": sorted(peer.congested),
                        }
                    )
                if command.get("quit"):
                    break
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return 0
