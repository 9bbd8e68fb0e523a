"""``crdtsync peer``: one collaborator as a process, driven by JSON lines on stdin.

Used by the multi-process tests and handy for trying a room by hand. Each input line is a
JSON object: ``{"append": "text"}`` adds to the shared text (``"doc": id`` says of which
document, opened first if need be; by default ``"default"``), ``{"flush": true}`` waits
until every edit so far is in the store, ``{"report": true}`` prints the peer's state
(``"docs": [ids]`` adds the text of each of those documents, opened first),
``{"quit": true}`` leaves. Each output line is a JSON object: ``{"ready": id}`` once joined,
``{"peers": [...]}`` whenever the linked peers change, ``{"flushed": n}`` after the n-th
flush, and the reports. The end of input ends the peer too, unless ``--serve`` (a service's
input ends at once): then it runs until SIGTERM or Ctrl-C. Several ``--signaling`` URLs
are servers to fail over between, in that order. With ``--store FILE`` the peer keeps every
document of the room's workspace in that store, the ones other peers open too: a restarted
process comes back with its edits, and an always-on one serves them while their editors are
closed. With ``--dialect y-webrtc`` it joins a y-webrtc room: with a store, it keeps a
browser room's document while every browser is closed, and hands it to the next one that
opens the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pycrdt

from crdtsync.errors import ConfigError, SyncTimeoutError
from crdtsync.peer import Dialect, Peer
from crdtsync.workspace import DEFAULT_DOC_ID

__all__ = ["emit", "read_stdin", "run_peer", "stop_signals"]

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


def stop_signals() -> asyncio.Future[int]:
    """A future that SIGINT (exit code 130, as shells expect) or SIGTERM (0: a service
    manager's clean stop) completes with the process's exit code."""
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[int] = loop.create_future()

    def stop(code: int) -> None:
        if not stopped.done():
            stopped.set_result(code)

    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        loop.add_signal_handler(signum, stop, code)
    return stopped


async def run_peer(
    signaling: str | Sequence[str],
    room: str,
    host_addresses: list[str] | None,
    store: Path | None,
    *,
    dialect: Dialect = "crdtsync",
    password: str | None = None,
    serve: bool = False,
) -> int:
    """Run one peer until ``{"quit": true}``, the end of input (unless ``serve``: a service's
    input ends at once), SIGINT or SIGTERM; returns the exit code."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    stopped = stop_signals()
    async with Peer(
        doc,
        room=room,
        signaling=signaling,
        host_addresses=host_addresses,
        store=store,
        dialect=dialect,
        password=password,
        keep_all=store is not None and dialect == "crdtsync",
    ) as peer:
        emit(ready=peer.id)
        watcher = asyncio.create_task(_report_peers(peer))
        commands = asyncio.create_task(_obey(peer, await read_stdin()))
        try:
            waits: set[asyncio.Future[Any]] = {commands, stopped}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if commands.done() and not commands.result() and serve:
                await stopped  # the input ended, the peer serves on
        finally:
            for task in (watcher, commands):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return stopped.result() if stopped.done() else 0


async def _obey(peer: Peer, commands: asyncio.StreamReader) -> bool:
    """Carry out command lines until ``quit`` (True) or the end of input (False)."""
    flushes = 0
    while line := await commands.readline():  # empty: stdin closed
        try:
            command = json.loads(line)
            if not isinstance(command, dict):
                raise TypeError("a command is a JSON object")
            text = await _text(peer, command.get("doc", DEFAULT_DOC_ID))
            reported = {doc_id: await _text(peer, doc_id) for doc_id in command.get("docs", ())}
        except (ValueError, TypeError, ConfigError) as exc:
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
                    "docs": {doc_id: str(text) for doc_id, text in reported.items()},
                    "peers": sorted(peer.peers),
                    "congested": sorted(peer.congested),
                    "bytes_sent": peer.bytes_sent,
                }
            )
        if command.get("quit"):
            return True
    return False


async def _text(peer: Peer, doc_id: object) -> pycrdt.Text:
    """The shared text of document ``doc_id``, opened first if it is not open."""
    if not isinstance(doc_id, str):
        raise TypeError(f"a document id is a string (got {doc_id!r})")
    doc = peer.doc(doc_id) if doc_id in peer.documents else await peer.open(doc_id)
    text: pycrdt.Text = doc.get(TEXT, type=pycrdt.Text)
    return text
