"""M4 against a real server on 127.0.0.1: nobody fills a room from one machine, and a token
bound to a peer admits that peer only. The documented answer to room squatting: hand out
tokens bound to the invitee's peer id (``make_join_token(..., peer_id=...)``); the per-address
cap bounds what a bearer token or an open room lets one machine take.
"""

from __future__ import annotations

import time

from test_server import hello, receive, send
from test_server_ywebrtc import get, open_

from crdtsync.protocol.signaling import Error, Join, Joined
from crdtsync.protocol.ywebrtc_signaling import Error as TopicError
from crdtsync.signaling.identity import Identity
from crdtsync.signaling.router import SignalingSettings
from crdtsync.signaling.server import SignalingServer
from crdtsync.signaling.tokens import make_join_token

SECRET = b"server secret"


async def test_a_squatter_with_a_bearer_token_takes_a_few_seats_not_the_room() -> None:
    """Was: 64 throwaway identities on one bearer token filled the room; room-full for all."""
    settings = SignalingSettings(token_secret=SECRET)
    expires = time.time() + 3600
    bearer = make_join_token(SECRET, "notes", expires)
    async with SignalingServer(settings=settings) as server:
        squatters = []
        outcomes = []
        for _ in range(settings.max_peers_per_room):
            ws, _ = await hello(server.url)
            await send(ws, Join("notes", bearer))
            outcomes.append(await receive(ws))
            squatters.append(ws)
        seated = [o for o in outcomes if isinstance(o, Joined)]
        assert len(seated) == settings.max_joins_per_room_per_address == 32
        assert {o.code for o in outcomes if isinstance(o, Error)} == {"address-crowded"}
        invitee = Identity()
        invited, _ = await hello(server.url, invitee, source="127.0.0.2")
        await send(
            invited, Join("notes", make_join_token(SECRET, "notes", expires, invitee.peer_id))
        )
        joined = await receive(invited)
        assert isinstance(joined, Joined)
        assert len(joined.peers) == settings.max_joins_per_room_per_address
        for ws in [*squatters, invited]:
            # The first squatters never read the 60-odd peer-joined messages: a polite close
            # would wait 10 s behind them for the server's close frame.
            ws.transport.abort()
            await ws.wait_closed()


async def test_a_bound_token_admits_its_peer_only_even_from_elsewhere() -> None:
    settings = SignalingSettings(token_secret=SECRET)
    invitee = Identity()
    bound = make_join_token(SECRET, "notes", time.time() + 3600, peer_id=invitee.peer_id)
    async with SignalingServer(settings=settings) as server:
        thief, _ = await hello(server.url, source="127.0.0.3")  # the token leaked to it
        await send(thief, Join("notes", bound))
        assert await receive(thief) == Error(
            "token", "join token for another peer for room 'notes'"
        )
        invited, _ = await hello(server.url, invitee, source="127.0.0.2")
        await send(invited, Join("notes", bound))
        assert await receive(invited) == Joined("notes", frozenset())
        # y-webrtc ids are not proven: a bound token admits nobody there.
        ws = await open_(f"{server.url}/?token={bound}", "notes")
        assert await get(ws) == TopicError("token", "join token for another peer for room 'notes'")
        for conn in (thief, invited, ws):
            await conn.close()
