"""The reconnecting signaling client against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from crdtsync.errors import SignalingError
from crdtsync.signaling.client import SignalingClient
from crdtsync.signaling.router import SignalingSettings
from crdtsync.signaling.server import SignalingServer
from crdtsync.signaling.tokens import make_join_token

TIMEOUT = 10.0


@dataclass
class Listener:
    members: dict[str, frozenset[str]] = field(default_factory=dict)
    history: list[frozenset[str]] = field(default_factory=list)
    signals: asyncio.Queue[tuple[str, str, bytes]] = field(default_factory=asyncio.Queue)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def members_changed(self, room: str, members: frozenset[str]) -> None:
        self.members[room] = members
        self.history.append(members)
        self.changed.set()

    def signal_received(self, room: str, peer_id: str, data: bytes) -> None:
        self.signals.put_nowait((room, peer_id, data))

    async def until_members(self, expected: frozenset[str]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while expected not in self.history:
                self.changed.clear()
                await self.changed.wait()


def client(url: str, listener: Listener) -> SignalingClient:
    """A client that retries fast, so a restarted server is found again quickly."""
    return SignalingClient(
        url, listener, rooms={"notes": None}, reconnect_base=0.05, reconnect_cap=0.2
    )


async def test_clients_meet_signal_and_survive_a_server_restart() -> None:
    server = SignalingServer(port=0)
    await server.start()
    port = int(server.url.rsplit(":", 1)[1])
    alice_hears, bob_hears = Listener(), Listener()
    alice, bob = client(server.url, alice_hears), client(server.url, bob_hears)
    try:
        for peer in (alice, bob):
            await peer.start()
            await peer.wait_joined("notes", TIMEOUT)
        await alice_hears.until_members(frozenset({bob.peer_id}))
        assert await alice.send_signal("notes", bob.peer_id, b"offer")
        assert await asyncio.wait_for(bob_hears.signals.get(), TIMEOUT) == (
            "notes",
            alice.peer_id,
            b"offer",
        )

        await server.aclose()  # the server goes away: members stand meanwhile
        await alice.wait_connected(False, timeout=TIMEOUT)
        await bob.wait_connected(False, timeout=TIMEOUT)
        assert alice.members("notes") == {bob.peer_id}
        assert not await alice.send_signal("notes", bob.peer_id, b"lost")

        server = SignalingServer(port=port)  # back, with no memory of anyone
        await server.start()
        for peer in (alice, bob):
            await peer.wait_joined("notes", TIMEOUT)
        assert server.router.rooms["notes"] == {alice.peer_id, bob.peer_id}  # the same ids
        assert await bob.send_signal("notes", alice.peer_id, b"answer")
        assert await asyncio.wait_for(alice_hears.signals.get(), TIMEOUT) == (
            "notes",
            bob.peer_id,
            b"answer",
        )
    finally:
        await alice.aclose()
        await bob.aclose()
        await server.aclose()


async def test_a_refused_token_is_a_clear_error() -> None:
    settings = SignalingSettings(token_secret=b"secret")
    async with SignalingServer(settings=settings) as server:
        listener = Listener()
        forged = make_join_token(b"wrong", "notes", 4_000_000_000)
        peer = SignalingClient(server.url, listener, rooms={"notes": forged})
        await peer.start()
        with pytest.raises(SignalingError, match="token forged"):
            await peer.wait_joined("notes", TIMEOUT)
        await peer.aclose()
