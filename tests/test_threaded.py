"""BackgroundPeer from plain threads: no event loop in the test, a real server and WebRTC."""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pycrdt
import pytest

from crdtsync import ConfigError, LocalProtocolError, SyncTimeoutError
from crdtsync.host_events import PeerLinked, PeerUnlinked
from crdtsync.peer import Peer
from crdtsync.threaded import BackgroundPeer, DocumentChanged, Notification

TIMEOUT = 15.0
EXAMPLE = Path(__file__).parent.parent / "examples" / "threaded_notes.py"


@pytest.fixture
def server_url() -> Iterator[str]:
    """A `crdtsync signal` process on a free port of 127.0.0.1."""
    with subprocess.Popen(
        [sys.executable, "-m", "crdtsync.cli", "signal", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            yield process.stdout.readline().split()[3]
        finally:
            process.kill()
            process.wait(TIMEOUT)


def text_of(peer: Peer) -> str:
    return str(peer.doc().get("text", type=pycrdt.Text))


def append(words: str) -> Callable[[Peer], int]:
    def edit(peer: Peer) -> int:
        text = peer.doc().get("text", type=pycrdt.Text)
        text.insert(len(text), words)
        return len(text)

    return edit


def until(peer: BackgroundPeer, wanted: type, **fields: object) -> list[Notification]:
    """Notifications up to the first of type ``wanted`` with ``fields``, woken by ``wakeup``."""
    seen: list[Notification] = []
    while True:
        notification = peer.notifications.get(timeout=TIMEOUT)
        seen.append(notification)
        if isinstance(notification, wanted) and all(
            getattr(notification, name) == value for name, value in fields.items()
        ):
            return seen


def peer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("crdtsync peer")]


def test_edits_both_ways_from_threads_without_a_loop(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    options = {"room": "threads", "signaling": server_url, "host_addresses": ("127.0.0.1",)}
    wakeups: queue.SimpleQueue[str] = queue.SimpleQueue()
    alice = BackgroundPeer(**options, wakeup=lambda: wakeups.put("alice"))
    bob = BackgroundPeer(**options)
    with caplog.at_level(logging.WARNING), alice, bob:
        assert until(alice, PeerLinked, peer_id=bob.id)
        assert wakeups.get(timeout=TIMEOUT) == "alice"  # called from the peer's thread
        assert alice.call(append("from alice. ")) == len("from alice. ")  # fn's result
        assert until(alice, DocumentChanged, local=True)
        until(bob, DocumentChanged, local=False)
        while "from alice" not in bob.call(text_of):
            until(bob, DocumentChanged, local=False)
        bob.call(append("from bob."))
        while "from bob" not in alice.call(text_of):
            until(alice, DocumentChanged, local=False)
        with pytest.raises(ZeroDivisionError):  # fn's exception, raised on the host's thread
            alice.call(lambda peer: 1 // 0)
        with pytest.raises(SyncTimeoutError):  # the peer's own timeout, passed through
            alice.run(lambda peer: peer.wait_for_peers(2, timeout=0.2))
        assert alice.run(lambda peer: peer.wait_synced(timeout=TIMEOUT)) is None
    assert until(alice, PeerUnlinked, peer_id=bob.id)  # queued as it closed
    assert peer_threads() == []
    assert [record.getMessage() for record in caplog.records] == []
    alice.close()  # idempotent
    with pytest.raises(LocalProtocolError):
        alice.call(text_of)


def test_a_peer_that_cannot_start_raises_on_the_hosts_thread() -> None:
    with pytest.raises(ConfigError):
        BackgroundPeer(room="").start()
    assert peer_threads() == []


def test_the_example_runs_and_leaves_one_thread(server_url: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--signaling", server_url, "--host-address", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.splitlines() == [
        "bob sees: ['alice: hello']",
        "alice sees: ['alice: hello', 'bob: hi alice']",
        "threads left: 1",
    ]
    assert result.stderr == ""
