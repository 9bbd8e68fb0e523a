"""A Python ``Peer(dialect="y-webrtc")`` in rooms with real, unmodified y-webrtc peers (Node
and headless Chromium), through our signaling server and through y-webrtc's ``bin/server.js``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import pycrdt
import pytest
from conftest import BrowserPeerFactory, NodePeerFactory, require_loopback_namespace
from test_multiprocess import cleanup, start_server
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from yjs_peers import YjsPeer

from crdtsync import Peer
from crdtsync.signaling.server import SignalingServer

TIMEOUT = 20.0
LOOPBACK = ["127.0.0.1"]


class PythonPeerFactory(Protocol):
    def __call__(
        self, room: str, url: str, *, password: str | None = None, **options: Any
    ) -> Awaitable[Peer]: ...


@pytest.fixture
async def python_peers(no_pending_tasks: None) -> AsyncIterator[PythonPeerFactory]:
    """``await python_peers(room, url)``: a started y-webrtc Peer on loopback, closed after
    (before ``no_pending_tasks`` looks for leftovers)."""
    require_loopback_namespace()
    started: list[Peer] = []

    async def factory(room: str, url: str, *, password: str | None = None, **options: Any) -> Peer:
        doc = options.pop("doc", None) or pycrdt.Doc()
        doc.get("text", type=pycrdt.Text)
        peer = Peer(
            doc,
            room=room,
            signaling=url,
            dialect="y-webrtc",
            host_addresses=LOOPBACK,
            password=password,
            **options,
        )
        await peer.start()
        started.append(peer)
        return peer

    yield factory
    for peer in reversed(started):
        await peer.aclose()


@pytest.fixture
async def our_server() -> AsyncIterator[str]:
    async with SignalingServer("127.0.0.1", 0) as server:
        yield server.url


@pytest.fixture(params=["crdtsync", "y-webrtc"])
def signaling_url(request: pytest.FixtureRequest) -> str:
    """Each test runs through our server and through y-webrtc's own."""
    name = "our_server" if request.param == "crdtsync" else "ywebrtc_server"
    url: str = request.getfixturevalue(name)
    return url


def text_of(peer: Peer) -> str:
    return str(peer.doc().get("text", type=pycrdt.Text))


def insert(peer: Peer, index: int, content: str) -> None:
    peer.doc().get("text", type=pycrdt.Text).insert(index, content)


async def converged(python: list[Peer], yjs: list[YjsPeer], *parts: str) -> str:
    """Wait until every peer's text holds every part; return it, the same everywhere."""
    holds = " && ".join(f"text.includes({part!r})" for part in parts)
    for js in yjs:
        await js.wait_until(holds, timeout=TIMEOUT)
    for peer in python:
        await peer.wait_for(
            lambda peer=peer: all(part in text_of(peer) for part in parts),
            timeout=TIMEOUT,
            what=f"text holding {parts}",
        )
    texts = [text_of(peer) for peer in python] + [await js.text() for js in yjs]
    assert texts == [texts[0]] * len(texts)
    assert sorted(texts[0]) == sorted("".join(parts))
    return texts[0]


@pytest.mark.parametrize("python_first", [True, False], ids=["python-offers", "python-answers"])
async def test_python_and_node_converge_on_concurrent_edits(
    signaling_url: str,
    node_peers: NodePeerFactory,
    python_peers: PythonPeerFactory,
    python_first: bool,
) -> None:
    room = f"py-node-{python_first}"
    if python_first:  # whoever is in the room first offers to the newcomer
        peer = await python_peers(room, signaling_url)
        (node,) = await node_peers(1, room, signaling_url)
    else:
        (node,) = await node_peers(1, room, signaling_url)
        peer = await python_peers(room, signaling_url)
    await peer.wait_for_peers(1, timeout=TIMEOUT)
    insert(peer, 0, "python;")
    await node.insert(0, "node;")
    await converged([peer], [node], "python;", "node;")
    assert await node.peer_count() == 1


@pytest.mark.parametrize("python_first", [True, False], ids=["python-offers", "python-answers"])
async def test_python_and_chromium_converge_and_share_awareness(
    signaling_url: str,
    browser_peers: BrowserPeerFactory,
    python_peers: PythonPeerFactory,
    python_first: bool,
) -> None:
    room = f"py-browser-{python_first}"
    if python_first:
        peer = await python_peers(room, signaling_url)
        (browser,) = await browser_peers(1, room, signaling_url)
    else:
        (browser,) = await browser_peers(1, room, signaling_url)
        peer = await python_peers(room, signaling_url)
    peer.awareness.set_local_state({"user": {"name": "python"}})
    await browser.set_awareness({"user": {"name": "browser"}})
    await peer.wait_for_peers(1, timeout=TIMEOUT)
    insert(peer, 0, "python;")
    await browser.insert(0, "browser;")
    await converged([peer], [browser], "python;", "browser;")
    python_id = peer.awareness.client_id

    async def browser_sees_python() -> bool:
        return (await browser.awareness_states()).get(python_id) == {"user": {"name": "python"}}

    await browser.wait_until(browser_sees_python, timeout=TIMEOUT)
    await peer.wait_for(
        lambda: peer.awareness.states.get(browser.client_id or -1) == {"user": {"name": "browser"}},
        timeout=TIMEOUT,
        what="the browser's awareness state",
    )


async def test_room_of_node_chromium_and_two_python_peers(
    signaling_url: str,
    node_peers: NodePeerFactory,
    browser_peers: BrowserPeerFactory,
    python_peers: PythonPeerFactory,
) -> None:
    room = "four"
    first = await python_peers(room, signaling_url)
    (node,) = await node_peers(1, room, signaling_url)
    (browser,) = await browser_peers(1, room, signaling_url)
    second = await python_peers(room, signaling_url)
    for peer in (first, second):
        await peer.wait_for_peers(3, timeout=TIMEOUT)
    insert(first, 0, "p1;")
    insert(second, 0, "p2;")
    await node.insert(0, "n;")
    await browser.insert(0, "b;")
    await converged([first, second], [node, browser], "p1;", "p2;", "n;", "b;")


async def test_password_room_and_a_wrong_password_never_links(
    signaling_url: str, node_peers: NodePeerFactory, python_peers: PythonPeerFactory
) -> None:
    room = "sealed"
    (node,) = await node_peers(1, room, signaling_url, password="hunter2")
    intruder = await python_peers(room, signaling_url, password="wrong")
    peer = await python_peers(room, signaling_url, password="hunter2")
    await peer.wait_for_peers(1, timeout=TIMEOUT)
    insert(peer, 0, "secret;")
    await node.insert(0, "node;")
    await converged([peer], [node], "secret;", "node;")
    # The intruder heard every announce and offer, and opened none of them.
    assert intruder.peers == frozenset()
    assert peer.peers == {node.peer_id}
    assert await node.peer_count() == 1


async def test_two_megabytes_reach_a_node_newcomer(
    signaling_url: str, node_peers: NodePeerFactory, python_peers: PythonPeerFactory
) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    peer = await python_peers("big", signaling_url)
    content = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz \n") for _ in range(2_000_000))
    insert(peer, 0, content)
    (node,) = await node_peers(1, "big", signaling_url)
    await node.wait_until(f"text.length === {len(content)}", timeout=60.0)
    assert await node.text() == content


async def test_edits_flow_after_the_signaling_server_is_killed(
    node_peers: NodePeerFactory, python_peers: PythonPeerFactory
) -> None:
    server, url = await start_server()
    async with cleanup([server]):
        peer = await python_peers("orphans", url)
        (node,) = await node_peers(1, "orphans", url)
        await peer.wait_for_peers(1, timeout=TIMEOUT)
        server.send_signal(signal.SIGKILL)
        await server.wait()
        # The server is gone; the data channel does not need it.
        insert(peer, 0, "after;")
        await node.insert(0, "still;")
        await converged([peer], [node], "after;", "still;")
        assert await node.peer_count() == 1


@pytest.fixture
async def glare_server() -> AsyncIterator[str]:
    """A y-webrtc signaling server that holds every announce until two peers have announced,
    then delivers both at once: each peer hears the other while it has no connection, so both
    offer (glare), and y-webrtc's rule (the larger token wins) must leave one connection."""
    subscribers: set[ServerConnection] = set()
    held: list[str] = []

    async def handle(connection: ServerConnection) -> None:
        async for frame in connection:
            message = json.loads(frame)
            if message["type"] == "subscribe":
                subscribers.add(connection)
            elif message["type"] == "ping":
                await connection.send(json.dumps({"type": "pong"}))
            elif message["type"] == "publish":
                message["clients"] = len(subscribers)
                out = json.dumps(message)
                data = message["data"]
                if isinstance(data, dict) and data.get("type") == "announce" and len(held) < 2:
                    held.append(out)
                    if len(held) < 2:
                        continue
                    outgoing = held
                else:
                    outgoing = [out]
                for other in list(subscribers):
                    for item in outgoing:
                        with contextlib.suppress(ConnectionClosed):
                            await other.send(item)

    async with serve(handle, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def test_glare_with_a_node_peer_ends_with_one_connection(
    glare_server: str, node_peers: NodePeerFactory, python_peers: PythonPeerFactory
) -> None:
    (node,) = await node_peers(1, "glare", glare_server)
    peer = await python_peers("glare", glare_server)
    await peer.wait_for_peers(1, timeout=TIMEOUT)
    insert(peer, 0, "python;")
    await node.insert(0, "node;")
    await converged([peer], [node], "python;", "node;")
    assert peer.peers == {node.peer_id}
    assert await node.peer_count() == 1


async def test_glare_two_python_peers_announce_at_once_one_connection(
    glare_server: str, python_peers: PythonPeerFactory
) -> None:
    signaling_url = glare_server
    a, b = await asyncio.gather(
        python_peers("glare", signaling_url), python_peers("glare", signaling_url)
    )
    await asyncio.gather(a.wait_for_peers(1, timeout=TIMEOUT), b.wait_for_peers(1, timeout=TIMEOUT))
    insert(a, 0, "a;")
    insert(b, 0, "b;")
    await converged([a, b], [], "a;", "b;")
    assert a.peers == {b.id}
    assert b.peers == {a.id}
