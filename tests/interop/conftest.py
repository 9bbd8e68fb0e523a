"""Fixtures for interop tests against real Yjs peers (y-webrtc in Node and in Chromium).

* ``ywebrtc_server``: y-webrtc's own signaling server (``bin/server.js``), as a ws:// URL.
* ``node_peers`` / ``browser_peers``: factories of ``NodePeer`` / ``BrowserPeer`` (yjs_peers.py),
  every peer closed at teardown, its diagnostics and events printed (shown when a test fails).
* ``require(condition, reason)`` and ``require_node`` / ``require_chromium`` /
  ``require_loopback_namespace`` (from yjs_peers, re-exported): skip, or fail under ``CI=true``
  so CI cannot pass by skipping. Test modules import these and the factory types from yjs_peers.

What these need: ``npm ci`` (node_modules), Debian's ``chromium`` for browser peers, and a
loopback-only network namespace (``scripts/loopback-netns``; ``make test`` does all three).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from yjs_peers import (
    REPO,
    YWEBRTC_SERVER,
    BrowserPeer,
    BrowserPeerFactory,
    NodePeer,
    NodePeerFactory,
    StaticServer,
    YjsPeer,
    build_test_page,
    require,
    require_chromium,
    require_loopback_namespace,
    require_node,
)

__all__ = [
    "BrowserPeerFactory",
    "NodePeerFactory",
    "browser_peers",
    "node_peers",
    "require",
    "require_chromium",
    "require_loopback_namespace",
    "require_node",
    "yjs_test_page",
    "ywebrtc_server",
]

SERVER_START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_accepting(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll-connect until the port accepts or ``SERVER_START_TIMEOUT`` passes; between tries,
    wait on the process itself, so an early exit is noticed at once."""
    attempts = int(SERVER_START_TIMEOUT / 0.02)
    for _ in range(attempts):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except ConnectionRefusedError:
            pass
        try:
            code = process.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"y-webrtc server exited with status {code}:\n{log.read_text()}")
    pytest.fail(f"y-webrtc server not accepting on port {port} within {SERVER_START_TIMEOUT} s")


@pytest.fixture
def ywebrtc_server(tmp_path: Path) -> Iterator[str]:
    """y-webrtc's ``bin/server.js``, unmodified, on a free port: yields ``ws://127.0.0.1:PORT``.

    It takes only ``PORT`` and listens on every interface; inside the loopback-only namespace
    that is 127.0.0.1 and ::1. Its output is printed at teardown.
    """
    require_node()
    require_loopback_namespace()
    port = _free_port()
    log = tmp_path / "ywebrtc-server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["node", str(YWEBRTC_SERVER)],
            cwd=REPO,
            env={**os.environ, "PORT": str(port)},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_accepting(port, process, log)
        yield f"ws://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(f"--- y-webrtc server (port {port})\n{log.read_text()}")


@pytest.fixture(scope="session")
def yjs_test_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The browser test page (esbuild bundle of the pinned yjs + y-webrtc), served on
    127.0.0.1: yields its URL."""
    require_node()
    folder = build_test_page(tmp_path_factory.mktemp("yjs-page"))
    with StaticServer(folder) as server:
        yield server.url + "index.html"


async def _close_all(peers: list[YjsPeer]) -> None:
    errors: list[BaseException] = []
    for peer in peers:
        try:
            await peer.close()
        except Exception as exc:
            errors.append(exc)
        print(peer.report())
    if errors:
        raise errors[0]


async def _start_all(
    peers: list[YjsPeer],
    room: str | None,
    signaling_url: str | None,
    password: str | None,
    start_options: dict[str, Any],
) -> None:
    if room is None:
        return
    if signaling_url is None:
        raise TypeError("room given without signaling_url")
    for peer in peers:  # one after the other: each newcomer is offered to by those already in
        await peer.start(room, signaling_url, password, **start_options)


@pytest.fixture
async def node_peers(no_pending_tasks: None) -> AsyncIterator[NodePeerFactory]:
    """A factory of Node y-webrtc peers: ``await node_peers(2, room, url, password=None)``
    returns 2 peers named node0, node1, ... (numbered across calls), started one after the
    other; without ``room`` they are returned unstarted (call ``start`` yourself). Every peer is
    closed at teardown. (Depends on ``no_pending_tasks`` so that check runs after the closing.)
    """
    created: list[YjsPeer] = []

    async def factory(
        count: int = 1,
        room: str | None = None,
        signaling_url: str | None = None,
        password: str | None = None,
        **start_options: Any,
    ) -> list[NodePeer]:
        require_node()
        require_loopback_namespace()
        peers = [NodePeer(f"node{len(created) + i}") for i in range(count)]
        created.extend(peers)
        await _start_all(list(peers), room, signaling_url, password, start_options)
        return peers

    yield factory
    await _close_all(created)


@pytest.fixture
async def browser_peers(
    no_pending_tasks: None, yjs_test_page: str, tmp_path: Path
) -> AsyncIterator[BrowserPeerFactory]:
    """A factory of headless Chromium y-webrtc peers, one browser process and fresh profile each:
    ``await browser_peers(1, room, url, password=None, fake_microphone=False)``; named browser0,
    ... As ``node_peers`` otherwise. Two browser peers link only with ``fake_microphone=True``
    (see ``BrowserPeer``)."""
    created: list[YjsPeer] = []

    async def factory(
        count: int = 1,
        room: str | None = None,
        signaling_url: str | None = None,
        password: str | None = None,
        *,
        fake_microphone: bool = False,
        **start_options: Any,
    ) -> list[BrowserPeer]:
        require_chromium()
        require_loopback_namespace()
        peers = []
        for _ in range(count):
            name = f"browser{len(created)}"
            peer = BrowserPeer(
                yjs_test_page,
                name,
                user_data_dir=tmp_path / f"{name}-profile",
                fake_microphone=fake_microphone,
            )
            created.append(peer)
            peers.append(peer)
        await _start_all(list(peers), room, signaling_url, password, start_options)
        return peers

    yield factory
    await _close_all(created)
