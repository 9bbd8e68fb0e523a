"""Password rooms and wss://, over a real signaling server and real aiortc on 127.0.0.1.

What the server sees is taken off the wire: a TCP relay in front of it keeps every byte the
server sends, which includes each link-setup payload it relays (server frames are not masked).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pycrdt
import pytest
from relaying import TcpRelay, pump

from crdtsync import ConfigError, Peer
from crdtsync.errors import SignalingError
from crdtsync.signaling.client import SignalingClient
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing import SimNetwork, wait_converged

TIMEOUT = 30.0
LOOPBACK = ("127.0.0.1",)
# What an SDP offer or answer always holds: none of it may cross the server in a password room.
SDP_MARKERS = (b"v=0", b"a=fingerprint", b"a=candidate", b"a=ice-pwd")


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class RecordingRelay(TcpRelay):
    """A TCP relay to the signaling server that keeps what the server sent."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.from_server = bytearray()

    async def _from_server(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        await pump(source, sink, seen=self.from_server.extend)


class Refusals(logging.Handler):
    """Which peer refused a signal from which: (refuser, sender) pairs, with a wake-up."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs: set[tuple[str, str]] = set()
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("! %s: refused a signal from %s"):
            assert isinstance(record.args, tuple)
            self.pairs.add((str(record.args[0]), str(record.args[1])))
            self.changed.set()

    async def wait_between(self, a: str, b: str) -> None:
        async with asyncio.timeout(TIMEOUT):
            while (a, b) not in self.pairs and (b, a) not in self.pairs:
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def peers_in(
    url: str, docs: Sequence[pycrdt.Doc[Any]], passwords: Sequence[str | None], **options: Any
) -> AsyncIterator[list[Peer]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                Peer(
                    doc,
                    room="secret",
                    signaling=url,
                    host_addresses=LOOPBACK,
                    password=password,
                    **options,
                )
            )
            for doc, password in zip(docs, passwords, strict=True)
        ]


async def linked_and_converged(peers: list[Peer], docs: list[pycrdt.Doc[Any]]) -> None:
    for peer in peers:
        await peer.wait_for_peers(len(peers) - 1, timeout=TIMEOUT)
    docs[0]["text"] = pycrdt.Text("only we can read this")
    await wait_converged(docs, timeout=TIMEOUT)


@pytest.mark.parametrize("password", [None, "correct horse"], ids=["open", "password"])
async def test_in_a_password_room_the_server_relays_only_ciphertext(password: str | None) -> None:
    async with SignalingServer() as server, RecordingRelay(port_of(server.url)) as relay:
        docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc(), pycrdt.Doc()]
        async with peers_in(relay.url, docs, [password, password]) as peers:
            await linked_and_converged(peers, docs)
    seen = [marker for marker in SDP_MARKERS if marker in relay.from_server]
    if password is None:  # the control: the relay does see SDP in an open room
        assert seen == list(SDP_MARKERS)
    else:
        assert seen == []
        assert len(relay.from_server) > 1000  # the offer and answer did go through it


async def test_a_peer_with_the_wrong_password_never_links() -> None:
    refusals = Refusals()
    logger = logging.getLogger("crdtsync.transport.webrtc")
    logger.addHandler(refusals)
    try:
        async with SignalingServer() as server:
            docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(3)]
            passwords = ["correct horse", "correct horse", "wrong horse"]
            async with peers_in(server.url, docs, passwords) as (alice, bob, mallory):
                await linked_and_converged([alice, bob], docs[:2])
                await refusals.wait_between(alice.id, mallory.id)
                await refusals.wait_between(bob.id, mallory.id)
                assert alice.peers == {bob.id}
                assert bob.peers == {alice.id}
                assert mallory.peers == frozenset()
                assert "text" not in list(docs[2].keys())
    finally:
        logger.removeHandler(refusals)


async def test_peers_meet_over_wss(tls_files: tuple[Path, Path]) -> None:
    certificate, key = tls_files
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(certificate, key)
    client_tls = ssl.create_default_context(cafile=certificate)
    async with SignalingServer(ssl=server_tls) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc(), pycrdt.Doc()]
        async with peers_in(server.url, docs, [None, None], ssl=client_tls) as peers:
            await linked_and_converged(peers, docs)


async def test_an_untrusted_certificate_is_refused(
    tls_files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "crdtsync.signaling")
    certificate, key = tls_files
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(certificate, key)
    async with SignalingServer(ssl=server_tls) as server:
        listener = _Silent()
        client = SignalingClient(server.url, listener, rooms={"secret": None})  # system CAs only
        await client.start()
        try:
            with pytest.raises(SignalingError, match="could not join"):
                await client.wait_joined("secret", timeout=3)
        finally:
            await client.aclose()
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    assert server.router.rooms.get("secret") is None


class _Silent:
    def members_changed(self, room: str, members: frozenset[str]) -> None:
        pass

    def signal_received(self, room: str, peer_id: str, data: bytes) -> None:
        pass


def test_tls_and_password_options_need_signaling() -> None:
    with pytest.raises(ConfigError, match="not network="):
        Peer(pycrdt.Doc(), room="r", network=SimNetwork(), password="x")
    with pytest.raises(ConfigError, match="must not be empty"):
        Peer(pycrdt.Doc(), room="r", signaling="ws://127.0.0.1:1", password="")
    with pytest.raises(ConfigError, match="needs a wss://"):
        Peer(
            pycrdt.Doc(),
            room="r",
            signaling="ws://127.0.0.1:1",
            ssl=ssl.create_default_context(),
        )
