"""Three ``crdtsync signal --redis`` processes on one real redis-server, with real WebRTC peers.

Peers spread over the servers link into one room and converge; a server killed with SIGKILL
or stopped with SIGTERM mid-session: its peers fail over to another (within 2 s after a
SIGTERM's 1001), keep their links, and a newcomer elsewhere meets them; Redis killed and
restarted: rooms work throughout (links stay, each server's own peers still meet) and the
rooms merge once it is back.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import pycrdt
import pytest
from needs import require_program

from crdtsync import Peer
from crdtsync.testing import wait_converged
from crdtsync.testing.processes import SignalProcess
from crdtsync.testing.redis_server import RedisServer

TIMEOUT = 20.0
LOOPBACK = ("127.0.0.1",)


@contextlib.asynccontextmanager
async def cluster(count: int) -> AsyncIterator[tuple[RedisServer, list[SignalProcess]]]:
    require_program("redis-server", "redis-server")
    redis = await RedisServer.start()
    servers: list[SignalProcess] = []
    try:
        for _ in range(count):
            servers.append(await SignalProcess.start(options=("--redis", redis.url)))
        yield redis, servers
    finally:
        for server in servers:
            await server.kill()
        await redis.stop()


def rotated(urls: list[str], first: int) -> list[str]:
    """Every server, starting at ``first``: each peer has a home and somewhere to go."""
    return urls[first:] + urls[:first]


@contextlib.asynccontextmanager
async def peers_on(urls: list[list[str]], docs: list[pycrdt.Doc[Any]]) -> AsyncIterator[list[Peer]]:
    peers = [
        Peer(doc, room="notes", signaling=servers, host_addresses=LOOPBACK)
        for doc, servers in zip(docs, urls, strict=True)
    ]
    try:
        for peer in peers:
            await peer.start()
        yield peers
    finally:
        for peer in peers:
            await peer.aclose()


def text_of(doc: pycrdt.Doc[Any]) -> pycrdt.Text:
    return doc.get("text", type=pycrdt.Text)


async def test_peers_spread_over_three_servers_link_and_converge() -> None:
    async with cluster(3) as (_, servers):
        urls = [server.url for server in servers]
        docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(3)]
        async with peers_on([[url] for url in urls], docs) as peers:  # one server each
            for peer in peers:
                await peer.wait_for_peers(2, timeout=TIMEOUT)
            for index, doc in enumerate(docs):
                text_of(doc).insert(0, f"peer {index} on server {index}; ")
            await wait_converged(docs, timeout=TIMEOUT)
            assert {peer.signaling_url for peer in peers} == set(urls)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
async def test_a_servers_peers_fail_over_and_stay_in_the_room(how: signal.Signals) -> None:
    async with cluster(3) as (_, servers):
        urls = [server.url for server in servers]
        docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(4)]
        async with peers_on([rotated(urls, i) for i in range(3)], docs[:3]) as peers:
            for peer in peers:
                await peer.wait_for_peers(2, timeout=TIMEOUT)
            first = peers[0]
            assert first.signaling_url == urls[0]

            await servers[0].kill(how)
            # A SIGTERM drains: 1001 to each client, which dials the next server at once.
            limit = 2.0 if how == signal.SIGTERM else TIMEOUT
            await first.wait_for(
                lambda: first.signaling_url in urls[1:], timeout=limit, what="on another server"
            )
            assert len(first.peers) == 2  # its links never depended on the server
            text_of(docs[0]).insert(0, "after the failover; ")
            await wait_converged(docs[:3], timeout=TIMEOUT)

            # Someone who only knows the third server meets the moved peer there.
            async with peers_on([[urls[2]]], docs[3:]) as (newcomer,):
                await newcomer.wait_for_peers(3, timeout=TIMEOUT)
                await first.wait_for_peers(3, timeout=TIMEOUT)
                text_of(docs[3]).insert(0, "newcomer; ")
                await wait_converged(docs, timeout=TIMEOUT)


async def test_rooms_work_while_redis_is_down_and_merge_after() -> None:
    async with cluster(2) as (redis, servers):
        urls = [server.url for server in servers]
        docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(4)]
        async with peers_on([[urls[0]], [urls[1]]], docs[:2]) as (alice, bob):
            await alice.wait_for_peers(1, timeout=TIMEOUT)

            await redis.kill()
            text_of(docs[0]).insert(0, "typed while Redis is down; ")
            await wait_converged(docs[:2], timeout=TIMEOUT)  # the link needs no server
            # Each server still introduces its own peers: carol meets alice on server 0, dave
            # meets bob on server 1 (the rooms are local until Redis is back).
            async with peers_on([[urls[0]], [urls[1]]], docs[2:]) as (carol, dave):
                await carol.wait_for_peers(1, timeout=TIMEOUT)
                await dave.wait_for_peers(1, timeout=TIMEOUT)
                assert carol.peers == {alice.id}
                assert dave.peers == {bob.id}
                await redis.restart()
                # Merged: everyone is named to everyone, and every pair links.
                for peer in (alice, bob, carol, dave):
                    await peer.wait_for_peers(3, timeout=TIMEOUT)
                text_of(docs[3]).insert(0, "after the merge; ")
                await wait_converged(docs, timeout=TIMEOUT)
