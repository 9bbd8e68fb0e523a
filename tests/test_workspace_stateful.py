"""Workspaces under random steps: 5 peers, 200 documents, opened, closed, edited, while the
network partitions, heals and peers crash.

Invariants: every document converges on every peer that has it open; documents never make
links (one link per remote peer, whatever is opened); a document a peer may not be shared
(the ``private-*`` ones, held by two peers only) is never named to it. On a virtual clock,
so an example replays exactly from the rules hypothesis prints (the network seed first).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pycrdt
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule
from sim_room_machine import SimRoomMachine

from crdtsync import Peer
from crdtsync.protocol.frames import Absent, Awareness, Sync, decode_frames
from crdtsync.testing import SimNetwork, doc_version, wait_converged

ROOM = "workspace"
PEERS = 5
PUBLIC = [f"doc-{index}" for index in range(190)]
PRIVATE = [f"private-{index}" for index in range(10)]
KEEPERS = (0, 2)  # the only peers that open private documents, and share them only together


class WorkspaceMachine(SimRoomMachine):
    def __init__(self) -> None:
        super().__init__()
        self.peers = [None] * PEERS
        # What each peer has open, kept across a crash (as an app would reopen its files).
        self.open: list[dict[str, pycrdt.Doc]] = [{} for _ in range(PEERS)]
        self.leaks: list[str] = []  # private documents named to a peer not sharing them

    # -- helpers ------------------------------------------------------------------------------

    @property
    def keeper_ids(self) -> set[str]:
        return {peer.id for index, peer in self.live() if index in KEEPERS}

    def share(self, remote_id: str, doc_id: str) -> bool:
        return not doc_id.startswith("private-") or remote_id in self.keeper_ids

    def join(self, index: int) -> None:
        peer = Peer(room=ROOM, network=self.sim(), share=self.share)
        for doc_id, doc in self.open[index].items():
            self.loop.run_until_complete(peer.open(doc_id, doc=doc))
        self.loop.run_until_complete(peer.start())
        self.peers[index] = peer

    def tap(self, sender: str, receiver: str, message: bytes) -> None:
        if sender not in self.keeper_ids or receiver in self.keeper_ids:
            return
        for frame in decode_frames(message):  # chunks are slices of big frames: none here
            if isinstance(frame, Sync | Awareness | Absent) and frame.doc_id in PRIVATE:
                self.leaks.append(f"{sender} named {frame.doc_id} to {receiver}")

    # -- rules --------------------------------------------------------------------------------

    @initialize(seed=st.integers(0, 2**32 - 1))
    def start(self, seed: int) -> None:
        self.network = SimNetwork(seed=seed, latency=0.01, jitter=0.01)
        self.network.tap = self.tap
        for index in range(PEERS):
            self.join(index)
        self.run(1.0)

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def open_documents(self, data: st.DataObject) -> None:
        index, peer = data.draw(st.sampled_from(self.live()), label="peer")
        choices = PUBLIC + PRIVATE if index in KEEPERS else PUBLIC
        doc_ids = data.draw(
            st.lists(st.sampled_from(choices), min_size=1, max_size=30), label="docs"
        )
        tasks = [self.loop.create_task(peer.open(doc_id, timeout=60)) for doc_id in doc_ids]
        self.run(data.draw(st.sampled_from([0.0, 0.05, 1.0]), label="then wait"))
        for doc_id in doc_ids:
            self.open[index][doc_id] = peer.doc(doc_id)
        for task in tasks:
            task.cancel()  # a partition may hold them up; they sync in the background anyway
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    @precondition(lambda self: any(self.open[index] for index, _ in self.live()))
    @rule(data=st.data())
    def close_document(self, data: st.DataObject) -> None:
        index, peer = data.draw(
            st.sampled_from([(i, p) for i, p in self.live() if self.open[i]]), label="peer"
        )
        doc_id = data.draw(st.sampled_from(sorted(self.open[index])), label="doc")
        self.loop.run_until_complete(peer.close_document(doc_id))
        del self.open[index][doc_id]

    @precondition(lambda self: any(self.open[index] for index, _ in self.live()))
    @rule(data=st.data())
    def edit(self, data: st.DataObject) -> None:
        index, _ = data.draw(
            st.sampled_from([(i, p) for i, p in self.live() if self.open[i]]), label="peer"
        )
        doc_id = data.draw(st.sampled_from(sorted(self.open[index])), label="doc")
        text = self.open[index][doc_id].get("text", type=pycrdt.Text)
        if len(text) and data.draw(st.booleans(), label="delete"):
            start = data.draw(st.integers(0, len(text) - 1))
            del text[start : start + 1]
        else:
            text.insert(data.draw(st.integers(0, len(text))), data.draw(st.text("ab", min_size=1)))
        self.run(data.draw(st.sampled_from([0.0, 0.05, 0.5]), label="then wait"))

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def a_private_document_is_never_named_to_a_peer_it_is_not_shared_with(self) -> None:
        assert not self.leaks

    @invariant()
    def links_are_per_peer_not_per_document(self) -> None:
        for _, peer in self.live():
            assert peer.id not in peer.peers
            # A glare's second link lives until its close is delivered: at most two per pair.
            assert all(count <= 2 for count in self.sim().open_links(peer.id).values())

    def healed(self) -> None:
        holders: dict[str, list[pycrdt.Doc]] = defaultdict(list)
        for index in range(PEERS):
            for doc_id, doc in self.open[index].items():
                holders[doc_id].append(doc)
        for doc_id, docs in sorted(holders.items()):
            self.loop.run_until_complete(wait_converged(docs, timeout=120.0))
            assert len({doc_version(doc) for doc in docs}) == 1, doc_id
        network, live = self.sim(), {peer.id for _, peer in self.live()}
        for _, peer in self.live():  # crashed peers' links time out, glare settles
            others = live - {peer.id}
            self.loop.run_until_complete(
                peer.wait_for(
                    lambda p=peer, o=others: (  # type: ignore[misc]
                        p.peers == o and network.open_links(p.id) == dict.fromkeys(o, 1)
                    ),
                    timeout=30,
                    what="one link to each live peer",
                )
            )


WorkspaceMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=60, deadline=None
)
TestWorkspace = WorkspaceMachine.TestCase
