"""Two editors typing into one shared note, with cursors, on the simulated network.

Run it with ``.venv/bin/python examples/two_editors.py`` after ``make demo`` or ``make test``
set up the virtualenv. It shows the whole API an application needs: a ``pycrdt.Doc`` per
user, a ``Peer`` per doc, edits and presence that reach the other side.
"""

from __future__ import annotations

import asyncio

import pycrdt

from crdtsync import Peer
from crdtsync.testing import SimNetwork, wait_converged


async def main() -> None:
    network = SimNetwork(seed=1, latency=0.03, jitter=0.01)  # 30 ms each way
    alice_doc, bob_doc = pycrdt.Doc(), pycrdt.Doc()
    async with (
        Peer(alice_doc, room="note", network=network) as alice,
        Peer(bob_doc, room="note", network=network) as bob,
    ):
        await alice.wait_for_peers(1, timeout=5)
        await bob.wait_synced(timeout=5)
        print(f"alice is {alice.id}, bob is {bob.id}; linked: {sorted(alice.peers)}")

        alice_text = alice_doc.get("note", type=pycrdt.Text)
        bob_text = bob_doc.get("note", type=pycrdt.Text)
        alice.awareness.set_local_state({"user": "alice", "cursor": 0})
        bob.awareness.set_local_state({"user": "bob", "cursor": 0})
        for alice_word, bob_word in zip(
            ["The", "quick", "fox"], ["jumps", "over", "dogs"], strict=True
        ):
            alice_text.insert(0, alice_word + " ")  # both type at once
            bob_text.insert(len(bob_text), " " + bob_word)
            await asyncio.sleep(0.01)
        await wait_converged([alice_doc, bob_doc], timeout=5)
        print(f"alice sees: {str(alice_text)!r}")
        print(f"bob sees:   {str(bob_text)!r}")
        users = sorted(state.get("user", "?") for state in bob.awareness.states.values() if state)
        print(f"bob's presence list: {users}")


if __name__ == "__main__":
    asyncio.run(main())
