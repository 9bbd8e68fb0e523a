"""The server as y-webrtc clients see it: JSON text frames on the native server's port and URL."""

from __future__ import annotations

import asyncio
import json
import random

from test_server import TIMEOUT, hello, receive, send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from crdtsync.protocol.signaling import Error as NativeError
from crdtsync.protocol.signaling import Join, Joined, decode_signaling
from crdtsync.protocol.ywebrtc_signaling import (
    Error,
    Ping,
    Pong,
    Publish,
    Subscribe,
    TopicMessage,
    Unsubscribe,
    decode_topic_message,
    encode_topic_message,
)
from crdtsync.signaling.router import SignalingSettings
from crdtsync.signaling.server import SignalingServer
from crdtsync.signaling.tokens import make_join_token


async def open_(url: str, *topics: str) -> ClientConnection:
    ws = await connect(url, compression=None, open_timeout=TIMEOUT, ping_interval=None)
    if topics:
        await put(ws, Subscribe(topics))
    return ws


async def put(ws: ClientConnection, message: TopicMessage) -> None:
    await ws.send(encode_topic_message(message))


async def get(ws: ClientConnection) -> TopicMessage:
    data = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(data, str), "y-webrtc clients get text frames only"
    return decode_topic_message(data, max_size=1 << 20)


async def settle(*clients: ClientConnection) -> None:
    """A ping round trip on each: everything sent before has been handled."""
    for ws in clients:
        await put(ws, Ping())
        assert await get(ws) == Pong()


async def closed_with(ws: ClientConnection) -> int:
    """The code the server closed ``ws`` with (what it sent before is skipped)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else 1006


def announce(peer: str) -> dict[str, object]:
    return {"type": "announce", "from": peer}


def signal(source: str, target: str) -> dict[str, object]:
    offer = {"type": "offer", "sdp": "v=0"}
    return {"type": "signal", "from": source, "to": target, "token": 1.5, "signal": offer}


async def test_pub_sub_with_counts_pings_and_targeted_signals() -> None:
    async with SignalingServer() as server:
        a, b, c = [await open_(server.url, "notes") for _ in range(3)]
        await settle(a, b, c)
        await put(a, Publish("notes", announce("peer-a")))
        for ws in (b, c):
            assert await get(ws) == Publish("notes", announce("peer-a"), clients=3)
        await put(b, Publish("notes", signal("peer-b", "peer-a")))
        assert await get(a) == Publish("notes", signal("peer-b", "peer-a"), clients=3)
        await put(c, Publish("notes", announce("peer-c")))
        await get(a)
        await get(b)
        await put(a, Publish("notes", signal("peer-a", "peer-c")))  # to c only
        assert await get(c) == Publish("notes", signal("peer-a", "peer-c"), clients=3)
        await put(a, Publish("notes", "AAECAw=="))  # a password room: opaque, to everyone else
        for ws in (b, c):
            assert await get(ws) == Publish("notes", "AAECAw==", clients=3)
        await put(c, Unsubscribe(("notes",)))
        await settle(a, b, c)  # nothing else was waiting: no echo, no stray signal
        await put(a, Publish("notes", signal("peer-a", "peer-c")))  # c left: dropped
        await put(a, Publish("notes", announce("peer-a")))
        assert await get(b) == Publish("notes", announce("peer-a"), clients=2)
        await settle(a, b, c)
        for ws in (a, b, c):
            await ws.close()


async def test_native_and_y_webrtc_rooms_of_one_name_never_meet() -> None:
    async with SignalingServer() as server:
        yjs = await open_(server.url, "notes")
        other = await open_(server.url, "notes")
        await settle(yjs, other)
        native, _ = await hello(server.url)
        await send(native, Join("notes"))
        assert await receive(native) == Joined("notes", frozenset())  # not the y-webrtc pair
        await put(yjs, Publish("notes", announce("peer")))
        assert await get(other) == Publish("notes", announce("peer"), clients=2)  # not 3
        assert server.router.rooms == {"notes": frozenset({_native_id(server)})}
        assert len(server.topics.topics["notes"]) == 2
        await settle(yjs, other)
        for ws in (yjs, other, native):
            await ws.close()


def _native_id(server: SignalingServer) -> str:
    (members,) = server.router.rooms.values()
    (peer_id,) = members
    return peer_id


async def test_each_limit_answers_with_a_json_error() -> None:
    settings = SignalingSettings(
        max_rooms_per_connection=2,
        max_peers_per_room=1,
        max_violations=7,
        messages_per_second=1,
        burst=12,
        max_message_size=4096,
    )
    async with SignalingServer(settings=settings) as server:
        first = await open_(server.url, "full")
        ws = await open_(server.url, "full")
        assert await get(ws) == Error("room-full", "room 'full' has 1 peers, the most allowed")
        await put(ws, Subscribe(("a", "b", "c")))
        assert await get(ws) == Error("too-many-rooms", "at most 2 rooms")
        await put(ws, Publish("full", announce("x")))
        assert await get(ws) == Error("unexpected", "not subscribed to topic 'full'")
        await ws.send("{not json")
        assert (await get(ws)).code == "malformed"  # type: ignore[union-attr]
        await ws.send(b"\x81\xa1t\xa4ping")  # a binary frame after text: still y-webrtc
        assert (await get(ws)).code == "malformed"  # type: ignore[union-attr]
        await put(ws, Pong())
        assert await get(ws) == Error("unexpected", "clients do not send pong")
        for _ in range(7):  # the burst of 12 is spent on the sixth
            await put(ws, Ping())
        replies = [await get(ws) for _ in range(7)]
        assert replies.count(Pong()) == 6
        assert Error("rate-limited", "over 1 messages/s") in replies
        await ws.send("[]")  # the eighth refusal: too many
        assert await closed_with(ws) == 1008

        huge = await open_(server.url)
        await huge.send(json.dumps({"type": "ping", "pad": "x" * 5000}))  # over max_size
        assert await closed_with(huge) == 1009
        await settle(first)
        await first.close()


async def test_idle_connections_are_closed() -> None:
    settings = SignalingSettings(idle_timeout=0.5, login_timeout=0.5)
    async with SignalingServer(settings=settings) as server:
        ws = await open_(server.url, "room")
        assert await closed_with(ws) == 1001
        silent = await open_(server.url)  # never says a word: belongs to no core, still timed
        assert await closed_with(silent) == 1008  # the login deadline: no first frame


async def test_tokens_ride_in_the_url_query() -> None:
    secret = b"server secret"
    async with SignalingServer(settings=SignalingSettings(token_secret=secret)) as server:
        stranger = await open_(server.url, "notes")
        assert await get(stranger) == Error("token", "join token missing for room 'notes'")
        token = make_join_token(secret, "notes", 4_000_000_000)
        invited = await open_(f"{server.url}/?token={token}", "notes", "todo")
        assert await get(invited) == Error("token", "join token forged for room 'todo'")
        assert [len(members) for members in server.topics.topics.values()] == [1]  # notes
        for ws in (stranger, invited):
            await ws.close()


async def test_fuzzed_frames_never_crash_the_server_nor_reach_an_honest_pair() -> None:
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    settings = SignalingSettings(messages_per_second=1e6, burst=1_000_000, max_message_size=8192)
    templates = [
        encode_topic_message(message)
        for message in (
            Subscribe(("x", "y")),
            Unsubscribe(("y",)),
            Publish("x", announce("mallory")),
            Publish("x", signal("mallory", "peer-x")),
            Publish("y", "ZW5jcnlwdGVk"),
        )
    ] + ['{"type":"publish","topic":"x","data":' + "[" * 40 + "]" * 40 + "}"]

    def frame() -> str | bytes:
        roll = rng.random()
        text = rng.choice(templates)
        if roll < 0.3:
            return text  # valid
        if roll < 0.7:  # mutated: a character replaced, dropped or doubled
            at = rng.randrange(len(text))
            mutation = rng.choice([chr(rng.randrange(0x20, 0x250)), "", text[at] * 2])
            return text[:at] + mutation + text[at + 1 :]
        if roll < 0.85:
            return rng.randbytes(rng.randrange(64))  # binary garbage (msgpack-ish for natives)
        if roll < 0.95:
            return "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randrange(64)))
        return rng.choice([b"\xff\xfe\xfd", b"\xc3(", b"x" * 9000])  # bad UTF-8, too big

    async with SignalingServer(settings=settings) as server:
        alice = await open_(server.url, "honest")
        bob = await open_(server.url, "honest")
        await settle(alice, bob)
        codes: list[int] = []
        seen: list[TopicMessage] = []
        handled = 0

        async def drain(ws: ClientConnection, replies: asyncio.Queue[str | bytes | None]) -> None:
            try:
                async for reply in ws:
                    replies.put_nowait(reply)
            except ConnectionClosed:
                pass
            codes.append(ws.close_code or 1006)
            replies.put_nowait(None)

        async def answered(replies: asyncio.Queue[str | bytes | None]) -> bool:
            """Until the probe's answer (all before it was handled); False once closed."""
            while (reply := await asyncio.wait_for(replies.get(), TIMEOUT)) is not None:
                if (
                    isinstance(reply, str)
                    and decode_topic_message(reply, max_size=1 << 20) == Pong()
                ):
                    return True  # a y-webrtc connection answered the ping
                if isinstance(reply, bytes):
                    refusal = decode_signaling(reply, max_size=1 << 20)
                    if isinstance(refusal, NativeError) and "text frame" in refusal.message:
                        return True  # a native connection refused the text probe
            return False

        async def fuzzer(frames: int) -> None:
            nonlocal handled
            sent = 0
            while sent < frames:
                ws = await connect(server.url, compression=None, max_size=None)
                replies: asyncio.Queue[str | bytes | None] = asyncio.Queue()
                reader = asyncio.create_task(drain(ws, replies))
                try:
                    while sent < frames:
                        data = frame()
                        sent += 1
                        is_text = isinstance(data, str) or data in (b"\xff\xfe\xfd", b"\xc3(")
                        await ws.send(data, text=is_text)
                        await put(ws, Ping())  # the probe: its answer comes after the frame's
                        if not await answered(replies):
                            break
                        handled += 1
                except ConnectionClosed:
                    pass
                finally:
                    await ws.close()
                    await reader

        async def honest_traffic() -> None:
            for n in range(50):
                await put(alice, Publish("honest", announce(f"alice-{n}")))
                message = await get(bob)
                seen.append(message)
                await put(bob, Publish("honest", signal("bob", f"alice-{n}")))
                seen.append(await get(alice))

        await asyncio.wait_for(
            asyncio.gather(*(fuzzer(2500) for _ in range(4)), honest_traffic()), 60
        )
        await settle(alice, bob)  # nothing else arrived meanwhile
        assert seen == [
            message
            for n in range(50)
            for message in (
                Publish("honest", announce(f"alice-{n}"), clients=2),
                Publish("honest", signal("bob", f"alice-{n}"), clients=2),
            )
        ], f"seed {seed}"
        print(f"{handled} frames answered;", {code: codes.count(code) for code in set(codes)})
        assert 1011 not in codes, f"seed {seed}"
        native, _ = await hello(server.url)  # both cores still serve newcomers
        await native.close()
        await alice.close()
        await bob.close()
