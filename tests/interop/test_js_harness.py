"""The harness itself: real y-webrtc peers (Node, Chromium) link and converge through y-webrtc's
own signaling server, so interop tests built on these fixtures start from something that works."""

from __future__ import annotations

import asyncio

from yjs_peers import BrowserPeerFactory, NodePeerFactory, YjsPeer

TIMEOUT = 20.0


async def converged(peers: list[YjsPeer], *parts: str) -> str:
    """Wait until every peer has one open connection per other peer and a text holding every
    part; return the text, the same on all peers."""
    links = len(peers) - 1
    holds = " && ".join(f"text.includes({part!r})" for part in parts)
    for peer in peers:
        await peer.wait_until(f"peers === {links} && {holds}", timeout=TIMEOUT)
    texts = [await peer.text() for peer in peers]
    assert texts == [texts[0]] * len(peers)
    assert sorted(texts[0]) == sorted("".join(parts))
    return texts[0]


async def test_two_node_peers_converge_on_concurrent_inserts(
    ywebrtc_server: str, node_peers: NodePeerFactory
) -> None:
    alice, bob = await node_peers(2, "harness-node-pair", ywebrtc_server)
    await asyncio.gather(alice.insert(0, "alice;"), bob.insert(0, "bob;"))
    await converged([alice, bob], "alice;", "bob;")
    for peer in (alice, bob):  # a Python predicate, re-run on each event the peer reports
        await peer.wait_until(
            lambda peer=peer: {"event": "synced", "synced": True} in peer.events, timeout=TIMEOUT
        )


async def test_node_and_browser_peers_converge_and_see_each_other(
    ywebrtc_server: str, node_peers: NodePeerFactory, browser_peers: BrowserPeerFactory
) -> None:
    (node,) = await node_peers(1, "harness-node-browser", ywebrtc_server)
    (browser,) = await browser_peers(1, "harness-node-browser", ywebrtc_server)
    await node.set_awareness({"user": {"name": "node"}})
    await browser.set_awareness({"user": {"name": "browser"}})
    await asyncio.gather(node.insert(0, "node;"), browser.insert(0, "browser;"))
    await converged([node, browser], "node;", "browser;")

    async def sees(peer: YjsPeer, other: YjsPeer) -> bool:
        return (await peer.awareness_states()).get(other.client_id or -1) == {
            "user": {"name": other.name.rstrip("0123456789")}
        }

    await node.wait_until(lambda: sees(node, browser), timeout=TIMEOUT)
    await browser.wait_until(lambda: sees(browser, node), timeout=TIMEOUT)


async def test_password_room_links_only_peers_with_the_password(
    ywebrtc_server: str, node_peers: NodePeerFactory
) -> None:
    (intruder,) = await node_peers(1, "harness-secret", ywebrtc_server, password="wrong")
    await intruder.insert(0, "intruder;")
    alice, bob = await node_peers(2, "harness-secret", ywebrtc_server, password="hunter2")
    await asyncio.gather(alice.insert(0, "alice;"), bob.insert(0, "bob;"))
    await converged([alice, bob], "alice;", "bob;")
    # The intruder got both announces (it subscribed first) and could decrypt neither.
    await intruder.wait_until(
        lambda: sum(event["event"] == "unhandled-rejection" for event in intruder.events) >= 2,
        timeout=TIMEOUT,
    )
    assert await intruder.peer_count() == 0
    assert not [event for event in intruder.events if event["event"] == "peers"]
    assert await intruder.text() == "intruder;"
    assert (await alice.peer_count(), await bob.peer_count()) == (1, 1)
