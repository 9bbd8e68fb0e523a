#!/usr/bin/env python3
"""Two collaborators in a program with no event loop of its own (as a Qt, Tk or Vim host).

Each ``BackgroundPeer`` runs its peer in a thread of its own; this program only calls in
(``call``, ``run``) and reads what comes back (``notifications``), from its main thread:

    .venv/bin/crdtsync signal --port 8765 &
    .venv/bin/python examples/threaded_notes.py --signaling ws://127.0.0.1:8765

It prints what each one sees, then how many threads are left once both are closed (1).
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable

import pycrdt

from crdtsync.peer import Peer
from crdtsync.threaded import BackgroundPeer, DocumentChanged

TIMEOUT = 10.0


def add_line(line: str) -> Callable[[Peer], None]:
    def edit(peer: Peer) -> None:
        text = peer.doc().get("notes", type=pycrdt.Text)
        text.insert(len(text), line + "\n")

    return edit


def notes(peer: Peer) -> str:
    return str(peer.doc().get("notes", type=pycrdt.Text))


def wait_for_line(peer: BackgroundPeer, line: str) -> None:
    """Block this thread until a remote edit brings ``line`` (a GUI would use ``wakeup``)."""
    while line not in peer.call(notes).splitlines():
        notification = peer.notifications.get(timeout=TIMEOUT)
        while not (isinstance(notification, DocumentChanged) and not notification.local):
            notification = peer.notifications.get(timeout=TIMEOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signaling", required=True, help="signaling server URL")
    parser.add_argument("--room", default="threaded-notes")
    parser.add_argument("--host-address", action="append", help="ICE host address (repeat)")
    args = parser.parse_args()
    options = {"room": args.room, "signaling": args.signaling, "host_addresses": args.host_address}
    with BackgroundPeer(**options) as alice, BackgroundPeer(**options) as bob:
        alice.run(lambda peer: peer.wait_for_peers(1, timeout=TIMEOUT), timeout=TIMEOUT + 1)
        alice.call(add_line("alice: hello"))
        wait_for_line(bob, "alice: hello")
        print("bob sees:", bob.call(notes).splitlines())
        bob.call(add_line("bob: hi alice"))
        wait_for_line(alice, "bob: hi alice")
        print("alice sees:", alice.call(notes).splitlines())
    print("threads left:", threading.active_count())


if __name__ == "__main__":
    main()
