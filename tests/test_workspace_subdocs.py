"""Subdocuments in workspaces on the simulated network: a Doc placed in an open document is
synced as a document of its own, opened and closed with what holds it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pycrdt
import pytest
from subdoc_pages import files, page_text, until_page_open

from crdtsync import ConfigError, Peer
from crdtsync.subdocs import subdoc_id
from crdtsync.testing import SimNetwork, wait_converged

ROOM = "subdocs"
TIMEOUT = 10.0


@asynccontextmanager
async def workspaces(network: SimNetwork, count: int, **options: Any) -> AsyncIterator[list[Peer]]:
    async with AsyncExitStack() as stack:
        peers = [
            await stack.enter_async_context(Peer(room=ROOM, network=network, **options))
            for _ in range(count)
        ]
        for peer in peers:
            await peer.wait_for_peers(count - 1, timeout=TIMEOUT)
        yield peers


async def test_a_subdoc_made_on_one_peer_appears_with_its_content_and_syncs_both_ways() -> None:
    async with workspaces(SimNetwork(seed=21), 3) as peers:
        parents = [await peer.open("notes") for peer in peers]
        page = pycrdt.Doc()
        page.get("text", type=pycrdt.Text).insert(0, "from alice")
        files(parents[0])["page"] = page
        await until_page_open(peers, parents, page, "from alice", timeout=TIMEOUT)
        # Bob edits through his parent's map; Alice's page (the Doc she placed) sees it.
        files(parents[1])["page"].get("text", type=pycrdt.Text).insert(0, "bob, ")
        await peers[0].wait_for(
            lambda: str(page.get("text", type=pycrdt.Text)) == "bob, from alice",
            timeout=TIMEOUT,
            what="bob's edit",
        )
        del files(parents[2])["page"]  # Carol removes it: everyone closes it
        for peer in peers:
            await peer.wait_for(
                lambda peer=peer: subdoc_id(page.guid) not in peer.documents,
                timeout=TIMEOUT,
                what="the page closed",
            )
        assert str(page.get("text", type=pycrdt.Text)) == "bob, from alice"  # still usable


async def test_nested_subdocs_sync_and_close_with_their_parent_document() -> None:
    async with workspaces(SimNetwork(seed=22), 2) as (alice, bob):
        chapter = pycrdt.Doc(guid="chapter-1")
        section = pycrdt.Doc(guid="section-1")
        section.get("text", type=pycrdt.Text).insert(0, "deep")
        chapter.get("sections", type=pycrdt.Map)["one"] = section
        files(await alice.open("book"))["chapter"] = chapter
        theirs = await bob.open("book")

        def deep_text() -> str | None:
            chapter = files(theirs).get("chapter")
            if chapter is None:
                return None
            section = chapter.get("sections", type=pycrdt.Map).get("one")
            return None if section is None else str(section.get("text", type=pycrdt.Text))

        await bob.wait_for(lambda: deep_text() == "deep", timeout=TIMEOUT, what="the section")
        assert {"subdoc:chapter-1", "subdoc:section-1"} <= bob.documents
        await bob.close_document("book")
        assert bob.documents == frozenset()


async def test_subdocs_come_back_from_the_store_with_their_parent(tmp_path: Path) -> None:
    store = tmp_path / "workspace.db"
    network = SimNetwork(seed=23)
    async with Peer(room=ROOM, network=network, store=store) as writer:
        page = pycrdt.Doc()
        page.get("text", type=pycrdt.Text).insert(0, "saved")
        files(await writer.open("notes"))["page"] = page
        await writer.wait_for(
            lambda: subdoc_id(page.guid) in writer.documents, timeout=TIMEOUT, what="the page"
        )
        await writer.flush()
    async with Peer(room=ROOM, network=network, store=store) as reader:
        notes = await reader.open("notes")  # no root declared before: found all the same
        assert subdoc_id(page.guid) in reader.documents
        assert page_text(notes) == "saved"


async def test_subdoc_ids_are_not_for_the_host_to_open_or_close() -> None:
    async with workspaces(SimNetwork(seed=24), 1) as (peer,):
        page = pycrdt.Doc(guid="p")
        files(await peer.open("notes"))["page"] = page
        await peer.wait_for(lambda: "subdoc:p" in peer.documents, timeout=TIMEOUT, what="page")
        assert peer.doc("subdoc:p").guid == "p"
        with pytest.raises(ConfigError, match="subdocument"):
            await peer.open("subdoc:p")
        with pytest.raises(ConfigError, match="subdocument"):
            await peer.close_document("subdoc:p")


async def test_peer_with_a_doc_syncs_its_subdocs_too() -> None:
    network = SimNetwork(seed=25)
    alice_doc, bob_doc = pycrdt.Doc(), pycrdt.Doc()
    page = pycrdt.Doc()
    page.get("text", type=pycrdt.Text).insert(0, "made before start")
    files(alice_doc)["page"] = page
    async with (
        Peer(alice_doc, room=ROOM, network=network),
        Peer(bob_doc, room=ROOM, network=network) as bob,
    ):
        await bob.wait_for(
            lambda: page_text(bob_doc) == "made before start", timeout=TIMEOUT, what="the page"
        )


async def test_a_keeper_that_served_a_subdoc_adopts_its_parents_instance(tmp_path: Path) -> None:
    network = SimNetwork(seed=26)
    async with Peer(room=ROOM, network=network, store=tmp_path / "keeper.db") as keeper:
        page = pycrdt.Doc(guid="kept-page")
        page.get("text", type=pycrdt.Text).insert(0, "kept")
        files(await keeper.open("notes"))["page"] = page
        await keeper.wait_for(
            lambda: "subdoc:kept-page" in keeper.documents, timeout=TIMEOUT, what="the page"
        )
        await keeper.close_document("notes")  # the page closes with it
        assert keeper.documents == frozenset()
        async with Peer(room=ROOM, network=network) as newcomer:
            await newcomer.wait_for_peers(1, timeout=TIMEOUT)
            theirs = await newcomer.open("notes")
            await newcomer.wait_for(
                lambda: page_text(theirs) == "kept", timeout=TIMEOUT, what="the page, served"
            )
            assert keeper.served == {"notes", "subdoc:kept-page"}
            ours = await keeper.open("notes")  # its page now syncs through our instance
            assert "subdoc:kept-page" in keeper.documents
            files(theirs)["page"].get("text", type=pycrdt.Text).insert(0, "edited, ")
            await keeper.wait_for(
                lambda: page_text(ours) == "edited, kept", timeout=TIMEOUT, what="the edit"
            )


@pytest.mark.parametrize("seed", range(1, 7))
async def test_random_adds_removals_and_edits_of_subdocs_converge(seed: int) -> None:
    rng = random.Random(seed)
    async with workspaces(SimNetwork(seed=seed, jitter=0.004), 3) as peers:
        parents = [await peer.open("notes") for peer in peers]
        for step in range(40):
            parent = rng.choice(parents)
            key = rng.choice("abcd")
            action = rng.random()
            if action < 0.3:
                files(parent)[key] = pycrdt.Doc(guid=f"s{seed}-{step}")
            elif action < 0.45 and key in files(parent):
                del files(parent)[key]
            elif key in files(parent):
                text = files(parent)[key].get("text", type=pycrdt.Text)
                text.insert(rng.randint(0, len(text)), f"<{step}>")
            if rng.random() < 0.3:  # let some of it travel before the next step
                await rng.choice(peers).wait_synced(timeout=TIMEOUT)
        await wait_converged(parents, timeout=TIMEOUT)
        held = {key: files(parents[0])[key].guid for key in files(parents[0])}
        for key in held:
            await wait_converged([files(parent)[key] for parent in parents], timeout=TIMEOUT)
        expected = {"notes"} | {subdoc_id(guid) for guid in held.values()}
        for peer in peers:
            await peer.wait_for(
                lambda peer=peer: peer.documents == expected,
                timeout=TIMEOUT,
                what=f"exactly the subdocs held (seed {seed})",
            )
