"""Workspaces on the simulated network: opening, closing, sharing, presence and the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pycrdt
import pytest

from crdtsync import ConfigError, Peer
from crdtsync.protocol.frames import Awareness, Sync, decode_frames
from crdtsync.testing import SimNetwork, converged, wait_converged

ROOM = "workspace"


def text(doc: pycrdt.Doc) -> str:
    return str(doc.get("text", type=pycrdt.Text))


def write(doc: pycrdt.Doc, content: str) -> None:
    doc.get("text", type=pycrdt.Text).insert(0, content)


@asynccontextmanager
async def workspaces(
    network: SimNetwork, count: int, **options: object
) -> AsyncIterator[list[Peer]]:
    async with AsyncExitStack() as stack:
        peers = [
            await stack.enter_async_context(Peer(room=ROOM, network=network, **options))  # type: ignore[arg-type]
            for _ in range(count)
        ]
        for peer in peers:
            await peer.wait_for_peers(count - 1, timeout=10)
        yield peers


async def test_open_returns_the_document_in_sync_with_those_who_hold_it() -> None:
    async with workspaces(SimNetwork(seed=1), 3) as (alice, bob, carol):
        write(await alice.open("notes/a.md"), "from alice")
        nobody_else = await alice.open("b.md")  # nobody holds it: returns at once
        assert text(nobody_else) == ""
        doc = await bob.open("notes/a.md")
        assert text(doc) == "from alice"  # in sync as open returns
        assert bob.documents == frozenset({"notes/a.md"})
        assert bob.doc("notes/a.md") is doc
        write(doc, "and bob, ")
        carol_doc = await carol.open("notes/a.md")
        await wait_converged([alice.doc("notes/a.md"), doc, carol_doc], timeout=5)
        assert len(alice.link_stats()) == 2  # one link per remote peer, three documents


async def test_a_closed_document_stops_syncing_but_stays_usable() -> None:
    async with workspaces(SimNetwork(seed=2), 2) as (alice, bob):
        ours = await alice.open("x")
        theirs = await bob.open("x")
        write(ours, "shared ")
        await wait_converged([ours, theirs], timeout=5)
        await bob.close_document("x")
        assert bob.documents == frozenset()
        write(ours, "after ")
        write(theirs, "offline ")
        other = await alice.open("y")  # a later document still syncs: the link is up
        write(other, "y")
        await wait_converged([other, await bob.open("y")], timeout=5)
        assert text(theirs) == "offline shared "
        assert "offline" not in text(ours)
        with pytest.raises(ConfigError, match="not open"):
            bob.doc("x")


async def test_a_document_opened_while_linked_reaches_a_peer_that_opens_it_later() -> None:
    async with workspaces(SimNetwork(seed=3), 2) as (alice, bob):
        doc = await bob.open("later")
        write(doc, "bob wrote first")
        assert text(await alice.open("later")) == "bob wrote first"


async def test_the_share_policy_hides_a_document_from_a_peer() -> None:
    network = SimNetwork(seed=4)
    told: list[tuple[str, str, str]] = []

    def tap(sender: str, receiver: str, message: bytes) -> None:
        for frame in decode_frames(message):
            if isinstance(frame, Sync | Awareness):
                told.append((sender, receiver, frame.doc_id))

    network.tap = tap
    mallory_id: list[str] = []

    def share(remote_id: str, doc_id: str) -> bool:
        return not (doc_id == "secret" and remote_id in mallory_id)

    async with (
        Peer(room=ROOM, network=network, share=share) as alice,
        Peer(room=ROOM, network=network) as mallory,
        Peer(room=ROOM, network=network, share=share) as bob,
    ):
        mallory_id.append(mallory.id)
        for peer in (alice, mallory, bob):
            await peer.wait_for_peers(2, timeout=5)
        write(await alice.open("secret"), "for bob only")
        assert text(await bob.open("secret")) == "for bob only"
        assert text(await mallory.open("secret")) == ""  # refused, as if alice lacked it
        write(await alice.open("public"), "for all")
        assert text(await mallory.open("public")) == "for all"
        assert (alice.id, bob.id, "secret") in told
        assert (alice.id, mallory.id, "secret") not in told
        assert (bob.id, mallory.id, "secret") not in told


async def test_presence_is_per_document() -> None:
    async with workspaces(SimNetwork(seed=5), 2) as (alice, bob):
        await alice.open("a")
        await alice.open("b")
        await bob.open("a")
        await bob.open("b")
        alice.awareness_of("a").set_local_state({"user": {"name": "alice"}, "cursor": 3})
        await bob.wait_for(
            lambda: any(
                state.get("user", {}).get("name") == "alice"
                for state in bob.awareness_of("a").states.values()
            ),
            timeout=5,
            what="alice's presence in a",
        )
        assert not any(state.get("cursor") for state in bob.awareness_of("b").states.values())


async def test_peer_with_a_doc_is_the_document_default() -> None:
    doc: pycrdt.Doc = pycrdt.Doc()
    async with Peer(doc, room=ROOM, network=SimNetwork(seed=6)) as peer:
        assert peer.doc() is doc
        assert peer.documents == frozenset({"default"})
        assert await peer.open("default") is doc


@pytest.mark.parametrize(
    ("doc_id", "match"),
    [
        ("", "empty"),
        (" padded", "letters"),
        ("tab\there", "letters"),
        ("x" * 257, "above the limit"),
        (7, "is a str"),
    ],
)
async def test_bad_document_ids_are_refused(doc_id: object, match: str) -> None:
    async with Peer(room=ROOM, network=SimNetwork(seed=7)) as peer:
        with pytest.raises(ConfigError, match=match):
            await peer.open(doc_id)  # type: ignore[arg-type]


async def test_the_y_webrtc_dialect_is_one_document() -> None:
    with pytest.raises(ConfigError, match="one document"):
        Peer(room=ROOM, signaling="ws://127.0.0.1:1", dialect="y-webrtc")


async def test_a_store_brings_back_fifty_documents_before_any_link(tmp_path: Path) -> None:
    store = tmp_path / "workspace.db"
    network = SimNetwork(seed=8)
    async with Peer(room=ROOM, network=network, store=store) as peer:
        for index in range(50):
            write(await peer.open(f"file-{index}"), f"content {index}")
        await peer.flush()
    offline = Peer(room=ROOM, network=network, store=store)  # not started: no link
    try:
        for index in range(50):
            assert text(await offline.open(f"file-{index}")) == f"content {index}"
    finally:
        await offline.aclose()


async def test_a_keeper_serves_documents_it_has_closed(tmp_path: Path) -> None:
    network = SimNetwork(seed=9)
    async with Peer(room=ROOM, network=network, store=tmp_path / "keeper.db") as keeper:
        for index in range(50):
            write(await keeper.open(f"file-{index}"), f"kept {index}")
            await keeper.close_document(f"file-{index}")
        assert keeper.documents == frozenset()
        async with Peer(room=ROOM, network=network) as newcomer:
            await newcomer.wait_for_peers(1, timeout=5)
            for index in range(50):
                assert text(await newcomer.open(f"file-{index}")) == f"kept {index}"
            write(newcomer.doc("file-3"), "edited ")
            reopened = await keeper.open("file-3")
            await keeper.wait_for(
                lambda: text(reopened) == "edited kept 3", timeout=5, what="the edit, kept"
            )
            assert converged([reopened, newcomer.doc("file-3")])


async def test_keep_all_needs_a_store() -> None:
    with pytest.raises(ConfigError, match="store"):
        Peer(room=ROOM, network=SimNetwork(), keep_all=True)
