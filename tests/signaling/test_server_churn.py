"""M2 against a real server on 127.0.0.1: an honest peer is never kicked for what others do.

(a) outsiders join and leave at once, so the victim's offers to them meet ``no-such-peer``;
(c) members burst full-size signals at a victim that is not reading for a moment. (b), the
decay of refusals, needs time to pass: it is tested on the core with virtual time
(``test_router.test_refusals_are_forgiven_over_time``).
"""

from __future__ import annotations

import asyncio
import random

from test_server import TIMEOUT, hello, receive, send
from test_server_backpressure import PAYLOAD, RawClient

from crdtsync.protocol.signaling import (
    Error,
    Join,
    Joined,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    Signal,
)
from crdtsync.signaling.router import SignalingSettings
from crdtsync.signaling.server import SignalingServer


async def test_offers_to_peers_that_just_left_never_get_the_sender_kicked() -> None:
    """M2a: was closed with 1008 after six; now refused with no-such-peer, for ever."""
    async with SignalingServer(settings=SignalingSettings()) as server:
        victim, _ = await hello(server.url)
        await send(victim, Join("notes"))
        assert await receive(victim) == Joined("notes", frozenset())
        for _ in range(3 * server.settings.max_violations):
            outsider, outsider_id = await hello(server.url)
            await send(outsider, Join("notes"))
            assert await receive(victim) == PeerJoined("notes", outsider_id)
            await outsider.close()
            assert await receive(victim) == PeerLeft("notes", outsider_id)
            await send(victim, Signal("notes", outsider_id, b"honest offer"))
            refusal = await receive(victim)
            assert isinstance(refusal, Error)
            assert refusal.code == "no-such-peer"
        await send(victim, Ping(1))
        assert await receive(victim) == Pong(1)
        await victim.close()


async def test_a_victim_others_flood_is_never_dropped_and_the_senders_hear_target_busy() -> None:
    """M2c: eight members burst 16 full-size signals each at a victim that is not reading:
    the victim used to be dropped as too slow; now relays stop at its queue limit."""
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    async with SignalingServer(settings=SignalingSettings()) as server:
        victim = await RawClient.login(server.url)  # 4 KiB receive buffer, reads on demand
        await victim.send(Join("notes"))
        assert await victim.receive() == Joined("notes", frozenset())
        # Eight members from eight addresses (127.0.0.0/8 is all loopback on Linux).
        senders = [await hello(server.url, source=f"127.0.0.{2 + i}") for i in range(8)]
        for ws, _ in senders:
            await send(ws, Join("notes"))
            joined = await receive(ws)
            assert isinstance(joined, Joined)
            assert victim.peer_id in joined.peers
        burst = 16  # each sender's whole byte_burst (1 MiB) of 60 KiB signals
        for ws, _ in senders:
            for _ in range(burst):
                await send(ws, Signal("notes", victim.peer_id, rng.randbytes(PAYLOAD)))
        busy = 0
        for index, (ws, _) in enumerate(senders):
            await send(ws, Ping(index))
            while (reply := await receive(ws)) != Pong(index):
                if isinstance(reply, PeerJoined):
                    continue  # members that joined after this one
                assert isinstance(reply, Error), reply
                assert reply.code == "target-busy"
                busy += 1
        relayed = len(senders) * burst - busy
        print(f"{relayed} relayed, {busy} refused as target-busy")
        assert busy > 0  # the victim's queue did fill up...
        await victim.send(Ping(99))
        signals = 0
        while (message := await victim.receive()) != Pong(99):  # ...and it is still served
            if isinstance(message, Signal):
                signals += 1
                assert len(message.data) == PAYLOAD
            else:
                assert isinstance(message, PeerJoined)
        assert signals == relayed
        for ws, _ in senders:  # nor were the senders kicked
            await send(ws, Ping(7))
            assert await asyncio.wait_for(receive(ws), TIMEOUT) == Pong(7)
        for ws, _ in senders:
            await ws.close()
        victim.close()
