"""The y-webrtc signaling core and codec without sockets: topics, relay, limits, tokens."""

from __future__ import annotations

import contextlib
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtsync.errors import LocalProtocolError, ProtocolError
from crdtsync.protocol.ywebrtc_signaling import (
    MAX_DEPTH,
    MAX_TOPICS_PER_MESSAGE,
    Error,
    Ping,
    Pong,
    Publish,
    Subscribe,
    TopicMessage,
    Unsubscribe,
    decode_topic_message,
    encode_topic_message,
    relayed_publish,
)
from crdtsync.signaling.limits import SignalingSettings
from crdtsync.signaling.tokens import make_join_token
from crdtsync.signaling.topics import TopicRouter

SECRET = b"server secret"
SIZE = 1 << 20


class Harness:
    def __init__(self, settings: SignalingSettings | None = None, wall: float = 1000.0) -> None:
        self.router = TopicRouter(settings, wall_clock=lambda: wall)
        self.now = 0.0

    def connect(self, path: str = "/", address: str = "") -> int:
        return self.router.connect(self.now, path=path, address=address)

    def send(self, conn: int, message: TopicMessage | str | bytes) -> None:
        data = message if isinstance(message, str | bytes) else encode_topic_message(message)
        self.router.receive(conn, data, self.now)

    def inbox(self) -> dict[int, list[TopicMessage]]:
        boxes: dict[int, list[TopicMessage]] = {}
        for conn, text in self.router.take_outgoing():
            assert isinstance(text, str)
            boxes.setdefault(conn, []).append(decode_topic_message(text, max_size=SIZE))
        return boxes


def announce(peer: str) -> dict[str, object]:
    return {"type": "announce", "from": peer}


def signal(source: str, target: str) -> dict[str, object]:
    return {"type": "signal", "from": source, "to": target, "token": 1.5, "signal": {"sdp": "x"}}


# -- codec --------------------------------------------------------------------------------------


def test_messages_encode_as_compact_json_the_way_y_webrtc_writes_them() -> None:
    assert encode_topic_message(Subscribe(("a", "b"))) == '{"type":"subscribe","topics":["a","b"]}'
    assert encode_topic_message(Publish("a", {"x": 1})) == (
        '{"type":"publish","topic":"a","data":{"x":1}}'
    )
    assert encode_topic_message(Publish("a", "c2VjcmV0", clients=2)) == (
        '{"type":"publish","topic":"a","data":"c2VjcmV0","clients":2}'
    )
    assert encode_topic_message(Ping()) == '{"type":"ping"}'
    assert encode_topic_message(Error("room-full", "no")) == (
        '{"type":"error","code":"room-full","message":"no"}'
    )
    assert decode_topic_message(b'{"type": "pong"}', max_size=SIZE) == Pong()
    assert decode_topic_message('{"type":"unsubscribe","topics":[]}', max_size=SIZE) == (
        Unsubscribe(())
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
topics = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20)
messages = st.one_of(
    st.builds(Subscribe, st.lists(topics, max_size=5).map(tuple)),
    st.builds(Unsubscribe, st.lists(topics, max_size=5).map(tuple)),
    st.builds(Publish, topics, json_values, st.none() | st.integers(0, 100)),
    st.just(Ping()),
    st.just(Pong()),
    st.builds(Error, topics, topics),
)


@given(messages)
def test_codec_round_trips(message: TopicMessage) -> None:
    text = encode_topic_message(message)
    assert decode_topic_message(text, max_size=SIZE) == message
    assert decode_topic_message(text.encode(), max_size=SIZE) == message


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_garbage_raises_only_protocol_error(data: bytes | str) -> None:
    with contextlib.suppress(ProtocolError):
        decode_topic_message(data, max_size=SIZE)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",  # not UTF-8
        "[1, 2]",
        '"text"',
        "{}",
        '{"type": "bogus"}',
        '{"type": 5}',
        '{"type": "subscribe"}',
        '{"type": "subscribe", "topics": "room"}',
        '{"type": "subscribe", "topics": [5]}',
        '{"type": "subscribe", "topics": [""]}',
        '{"type": "subscribe", "topics": ["' + "x" * 257 + '"]}',
        '{"type": "subscribe", "topics": ' + json.dumps(["t"] * (MAX_TOPICS_PER_MESSAGE + 1)) + "}",
        '{"type": "publish", "data": {}}',
        '{"type": "publish", "topic": "t"}',
        '{"type": "publish", "topic": "t", "data": NaN}',
        '{"type": "publish", "topic": "t", "data": -Infinity}',
        '{"type": "publish", "topic": "t", "data": 1e400}',
        '{"type": "publish", "topic": "t", "data": {}, "clients": -1}',
        '{"type": "publish", "topic": "t", "data": {}, "clients": true}',
        '{"type": "publish", "topic": "t", "data": "\\ud800"}',  # a lone surrogate
        '{"type": "publish", "topic": "t", "data": {"\\uDC00": 1}}',  # one as a key
        '{"type": "publish", "topic": "t", "data": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}",
        "[" * 100_000 + "]" * 100_000,
        '{"type": "publish", "topic": "t", "data": ' + "9" * 5000 + "}",
        '{"type": "error", "code": "", "message": "m"}',
    ],
)
def test_malformed_frames_raise_protocol_error(data: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_topic_message(data, max_size=SIZE)


def test_size_is_checked_first_and_in_utf8_bytes() -> None:
    frame = encode_topic_message(Publish("t", "é" * 100))
    assert decode_topic_message(frame, max_size=len(frame.encode()))
    with pytest.raises(ProtocolError) as raised:
        decode_topic_message(frame, max_size=len(frame.encode()) - 1)
    assert raised.value.close_code == 1009


def test_nesting_just_inside_the_cap_is_fine_and_unencodable_values_raise_locally() -> None:
    data: object = {}
    for _ in range(MAX_DEPTH - 2):
        data = [data]
    assert decode_topic_message(encode_topic_message(Publish("t", data)), max_size=SIZE)
    with pytest.raises(LocalProtocolError):
        encode_topic_message(Publish("t", [data]))
    with pytest.raises(LocalProtocolError):
        encode_topic_message(Publish("t", float("nan")))
    with pytest.raises(LocalProtocolError):
        encode_topic_message(Publish("t", object()))


# -- router -------------------------------------------------------------------------------------


def test_publish_reaches_the_other_subscribers_with_the_count() -> None:
    h = Harness()
    a, b, c, d = h.connect(), h.connect(), h.connect(), h.connect()
    for conn in (a, b, c):
        h.send(conn, Subscribe(("notes",)))
    h.send(d, Subscribe(("other",)))
    h.send(a, Subscribe(("notes", "notes")))  # idempotent, no refusal
    assert h.inbox() == {}
    assert h.router.topics == {"notes": frozenset({a, b, c}), "other": frozenset({d})}
    h.send(a, Publish("notes", announce("peer-a")))
    relayed = Publish("notes", announce("peer-a"), clients=3)
    assert h.inbox() == {b: [relayed], c: [relayed]}  # not echoed, not across topics
    h.send(c, Unsubscribe(("notes",)))
    h.send(a, Publish("notes", "b64cipher"))
    assert h.inbox() == {b: [Publish("notes", "b64cipher", clients=2)]}
    h.send(a, Ping())
    assert h.inbox() == {a: [Pong()]}
    h.router.disconnect(b)
    assert h.router.topics == {"notes": frozenset({a}), "other": frozenset({d})}


def test_signals_go_only_to_the_connection_that_announced_the_target() -> None:
    h = Harness()
    a, b, c = h.connect(), h.connect(), h.connect()
    for conn in (a, b, c):
        h.send(conn, Subscribe(("notes", "other")))
    h.send(a, Publish("notes", announce("peer-a")))
    h.send(b, Publish("other", announce("peer-b-other")))  # one connection, one id per room
    h.send(b, Publish("notes", signal("peer-b", "peer-a")))  # binds peer-b to b in notes
    h.inbox()
    h.send(a, Publish("notes", signal("peer-a", "peer-b")))
    assert h.inbox() == {b: [Publish("notes", signal("peer-a", "peer-b"), clients=3)]}
    h.send(a, Publish("notes", signal("peer-a", "peer-b-other")))  # bound in another topic
    h.send(a, Publish("notes", signal("peer-a", "nobody")))
    h.send(a, Publish("notes", {"type": "signal", "from": "peer-a", "to": 7}))
    assert h.inbox() == {}  # dropped quietly: churn is not a violation
    h.send(c, Publish("notes", signal("peer-b", "peer-a")))  # c now speaks as peer-b
    h.inbox()
    h.send(a, Publish("notes", signal("peer-a", "peer-b")))
    assert list(h.inbox()) == [c]  # the latest publisher of an id wins
    h.send(c, Unsubscribe(("notes",)))
    h.send(a, Publish("notes", signal("peer-a", "peer-b")))
    assert h.inbox() == {}  # its bindings left with it
    for _ in range(10):
        h.send(a, Publish("notes", signal("peer-a", "nobody")))
    assert h.inbox() == {}
    assert h.router.take_closing() == []


def test_a_connection_keeps_only_its_latest_few_ids_per_topic() -> None:
    h = Harness()
    a, b = h.connect(), h.connect()
    h.send(a, Subscribe(("t",)))
    h.send(b, Subscribe(("t",)))
    for n in range(10):
        h.send(b, Publish("t", announce(f"id-{n}")))
    h.inbox()
    h.send(a, Publish("t", signal("x", "id-9")))
    h.send(a, Publish("t", signal("x", "id-0")))
    assert [m.data["to"] for m in h.inbox()[b]] == ["id-9"]  # type: ignore[union-attr, index]


def test_tokens_come_from_the_url_and_admit_only_their_topic() -> None:
    h = Harness(SignalingSettings(token_secret=SECRET), wall=1000.0)
    good = make_join_token(SECRET, "notes", 2000)
    old = make_join_token(SECRET, "notes", 999)
    anonymous = h.connect("/")
    forged = h.connect("/?token=" + make_join_token(b"other", "notes", 2000))
    expired = h.connect(f"/?token={old}")
    both = h.connect(f"/signal?token={make_join_token(SECRET, 'todo', 2000)}&token={good}")
    for conn in (anonymous, forged, expired, both):
        h.send(conn, Subscribe(("notes", "todo")))
    boxes = h.inbox()
    assert boxes[anonymous] == [
        Error("token", "join token missing for room 'notes'"),
        Error("token", "join token missing for room 'todo'"),
    ]
    assert boxes[forged][0] == Error("token", "join token forged for room 'notes'")
    assert boxes[expired][0] == Error("token", "join token expired for room 'notes'")
    assert both not in boxes
    assert h.router.topics == {"notes": frozenset({both}), "todo": frozenset({both})}


def test_each_limit_refuses_with_the_native_codes_then_disconnects() -> None:
    h = Harness(
        SignalingSettings(max_peers_per_room=1, max_rooms_per_connection=2, max_violations=4)
    )
    a, b = h.connect(), h.connect()
    h.send(a, Subscribe(("one", "two", "three", "four")))
    h.send(b, Subscribe(("one",)))
    h.send(b, Publish("two", announce("b")))
    h.send(b, Pong())
    boxes = h.inbox()
    assert boxes[a] == [Error("too-many-rooms", "at most 2 rooms")]
    assert boxes[b] == [
        Error("room-full", "room 'one' has 1 peers, the most allowed"),
        Error("unexpected", "not subscribed to topic 'two'"),
        Error("unexpected", "clients do not send pong"),
    ]
    h.send(b, "not json")
    assert h.inbox()[b][0].code == "malformed"  # type: ignore[union-attr]
    h.send(b, "not json")
    assert h.router.take_closing() == [(b, 1008, "too many refused requests (last: malformed)")]
    assert h.router.topics == {"one": frozenset({a}), "two": frozenset({a})}


def test_a_flood_is_rate_limited_and_idle_connections_dropped_on_time() -> None:
    h = Harness(SignalingSettings(messages_per_second=10, burst=20, max_violations=1000))
    conn = h.connect()
    for _ in range(50):
        h.send(conn, Ping())
    replies = h.inbox()[conn]
    assert replies.count(Pong()) == 20
    assert replies.count(Error("rate-limited", "over 10 messages/s")) == 30
    h.now = 30.0
    quiet = h.connect()
    assert h.router.get_timer() == 45.0
    h.router.handle_timer(45.0)
    assert h.router.take_closing() == [(conn, 1001, "idle for 45 s")]
    assert h.router.get_timer() == 75.0
    h.router.handle_timer(75.0)
    assert h.router.take_closing() == [(quiet, 1001, "idle for 45 s")]
    assert h.router.get_timer() is None


def test_random_frames_never_raise_and_leave_honest_topics_alone() -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    h = Harness(SignalingSettings(max_violations=1 << 30, burst=1 << 30))
    alice, bob = h.connect(), h.connect()
    h.send(alice, Subscribe(("honest",)))
    h.send(bob, Subscribe(("honest",)))
    hostile = [h.connect() for _ in range(3)]
    valid = [
        encode_topic_message(m)
        for m in (
            Subscribe(("x", "y")),
            Publish("x", signal("p", "q")),
            Publish("y", announce("mallory")),
            Unsubscribe(("x",)),
            Ping(),
        )
    ]
    for _ in range(3000):
        frame = rng.choice(valid)
        cut = rng.randrange(len(frame) + 1)
        data: str | bytes = frame[:cut] + chr(rng.randrange(0x20, 0x7F)) + frame[cut + 1 :]
        if rng.random() < 0.2:
            data = rng.randbytes(rng.randrange(40))
        h.send(rng.choice(hostile), data)
    assert not {alice, bob} & set(h.inbox()), f"seed {seed}"
    h.send(alice, Publish("honest", announce("alice")))
    assert h.inbox() == {bob: [Publish("honest", announce("alice"), clients=2)]}, f"seed {seed}"


def test_a_busy_subscriber_is_skipped_or_its_sender_told_never_dropped() -> None:
    """M2c in y-webrtc: a signal to a connection that is behind is refused (target-busy, not
    counted); a broadcast skips it; once the adapter reports it drained, relays resume."""
    h = Harness(SignalingSettings(send_queue_bytes=65536, max_violations=1))
    a, b, c = h.connect(), h.connect(), h.connect()
    for conn in (a, b, c):
        h.send(conn, Subscribe(("notes",)))
    h.send(b, Publish("notes", announce("peer-b")))
    h.inbox()
    big = {"type": "signal", "from": "peer-a", "to": "peer-b", "signal": "x" * 30_000}
    for _ in range(4):
        h.send(a, Publish("notes", big))
    boxes = h.inbox()
    assert len(boxes[b]) == 2
    assert [m.code for m in boxes[a]] == ["target-busy"] * 2  # type: ignore[union-attr]
    loud = {**announce("peer-c"), "pad": "x" * 30_000}
    h.send(c, Publish("notes", loud))
    assert list(h.inbox()) == [a]  # b is skipped, not dropped
    assert h.router.take_closing() == []
    h.router.sent(b, 1 << 20)
    h.send(c, Publish("notes", loud))
    assert sorted(h.inbox()) == [a, b]


def test_one_address_takes_a_few_seats_of_a_topic() -> None:
    h = Harness(SignalingSettings(max_joins_per_room_per_address=2, max_violations=100))
    squatters = [h.connect(address="198.51.100.7") for _ in range(3)]
    for conn in squatters:
        h.send(conn, Subscribe(("notes",)))
    other = h.connect(address="203.0.113.9")
    h.send(other, Subscribe(("notes",)))
    assert h.inbox() == {
        squatters[2]: [
            Error("address-crowded", "room 'notes' has 2 peers from this address, the most allowed")
        ]
    }
    assert h.router.topics["notes"] == frozenset({*squatters[:2], other})


def test_no_first_frame_login_deadline_here_only_idle() -> None:
    """y-webrtc has no login: the adapter bounds the first frame; the core only idles."""
    h = Harness(SignalingSettings(idle_timeout=45.0, login_timeout=5.0))
    conn = h.connect()
    assert h.router.get_timer() == 45.0
    h.router.handle_timer(45.0)
    assert h.router.take_closing() == [(conn, 1001, "idle for 45 s")]
    assert h.router.get_timer() is None


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"publish","topic":"t","data":{"type":"announce","from":"a"}}',
        ' {"type": "publish", "topic": "t", "data": "sealed=="}\n',
        '{"type":"publish","topic":"t","data":[1,{"x":null}],"clients":99}',  # theirs: replaced
    ],
)
def test_a_relayed_publish_is_the_clients_text_with_clients_set(frame: str) -> None:
    publish = decode_topic_message(frame, max_size=SIZE)
    assert isinstance(publish, Publish)
    relayed = relayed_publish(frame, publish, 8)
    assert decode_topic_message(relayed, max_size=SIZE) == Publish(publish.topic, publish.data, 8)
