"""A terminal chat room over real WebRTC: run it in two (or more) terminals.

    .venv/bin/crdtsync signal --port 8765                  # terminal 1: the signaling server
    .venv/bin/python examples/chat.py --name alice         # terminal 2
    .venv/bin/python examples/chat.py --name bob           # terminal 3

Type a line and press Enter: it reaches everyone in the room, peer to peer (the server only
introduced you). The whole history is one shared ``pycrdt.Array``, so a latecomer sees
everything said before, and messages typed while two peers were apart merge when they meet
again. Add ``--password`` (the same in every terminal) to encrypt the introductions end to
end. Peers on other machines pass ``--host-address`` with their LAN address and a
``--signaling`` URL that all of them can reach. Ctrl-D leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pycrdt

from crdtsync import Peer, SyncTimeoutError


def show(event: pycrdt.ArrayEvent) -> None:
    """Print every message as it enters the shared history (ours too)."""
    for change in event.delta:
        for message in change.get("insert", ()):
            print(f"{message['from']}: {message['text']}", flush=True)


async def chat(args: argparse.Namespace) -> None:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    history = doc.get("messages", type=pycrdt.Array)
    history.observe(show)
    lines = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), sys.stdin)
    async with Peer(
        doc,
        room=args.room,
        signaling=args.signaling,
        host_addresses=args.host_address or ("127.0.0.1",),
        password=args.password,
    ) as peer:
        print(f"* you are {args.name} ({peer.id}) in room {args.room!r}", flush=True)
        reported: frozenset[str] = frozenset()
        watcher = asyncio.create_task(report_links(peer, reported))
        try:
            while line := await lines.readline():  # empty at Ctrl-D
                if text := line.decode().strip():
                    history.append({"from": args.name, "text": text})
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


async def report_links(peer: Peer, reported: frozenset[str]) -> None:
    """Say whenever the set of linked peers changes."""
    while True:
        try:
            await peer.wait_for(changed(peer, reported), timeout=60, what="a link change")
        except SyncTimeoutError:
            continue  # nothing changed for a minute: keep watching
        reported = peer.peers
        print(f"* linked with {len(reported)} peer(s)", flush=True)


def changed(peer: Peer, reported: frozenset[str]) -> Callable[[], bool]:
    return lambda: peer.peers != reported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="what others see before your lines")
    parser.add_argument("--room", default="chat")
    parser.add_argument("--signaling", default="ws://127.0.0.1:8765", help="signaling server URL")
    parser.add_argument("--password", help="room password (end-to-end encrypted introductions)")
    parser.add_argument(
        "--host-address", action="append", help="address ICE offers (default 127.0.0.1)"
    )
    asyncio.run(chat(parser.parse_args()))


if __name__ == "__main__":
    main()
