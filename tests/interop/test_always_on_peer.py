"""The always-on peer: ``crdtsync peer --dialect y-webrtc --store FILE`` keeps a browser room's
document while every browser is closed (even across its own restart) and hands it to the
next browser that opens the room."""

from __future__ import annotations

from pathlib import Path

from conftest import BrowserPeerFactory, require_loopback_namespace
from test_multiprocess import PeerProcess

from crdtsync.signaling.server import SignalingServer

TIMEOUT = 30.0
ROOM = "always-on"


async def test_a_stored_python_peer_hands_the_room_to_a_later_browser(
    browser_peers: BrowserPeerFactory, tmp_path: Path
) -> None:
    require_loopback_namespace()
    store = tmp_path / "room.sqlite"
    options = ("--dialect", "y-webrtc", "--password", "hunter2")
    async with SignalingServer("127.0.0.1", 0) as server:
        keeper = await PeerProcess.start(server.url, store, room=ROOM, options=options)
        try:
            (first,) = await browser_peers(1, ROOM, server.url, password="hunter2")
            await first.insert(0, "typed in the first browser;")
            await keeper.until_text({"first"})
            await keeper.send(flush=True)
            await keeper.next_event("flushed")
            await first.close()  # every browser is closed now
        finally:
            await keeper.quit()
        # A new process comes back from the store alone, and the next browser gets it all.
        keeper = await PeerProcess.start(server.url, store, room=ROOM, options=options)
        try:
            (later,) = await browser_peers(1, ROOM, server.url, password="hunter2")
            await later.wait_until("text === 'typed in the first browser;'", timeout=TIMEOUT)
        finally:
            await keeper.quit()
