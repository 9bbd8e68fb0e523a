"""The signaling core without sockets: ids, rooms, relay, tokens, limits, idle timeouts."""

from __future__ import annotations

import itertools

import pytest

from crdtsync.protocol.signaling import (
    Challenge,
    Error,
    Hello,
    Join,
    Joined,
    Leave,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    Prove,
    Signal,
    SignalingMessage,
    Welcome,
    decode_signaling,
    encode_signaling,
)
from crdtsync.signaling.identity import Identity
from crdtsync.signaling.router import Router, SignalingSettings
from crdtsync.signaling.tokens import make_join_token

SECRET = b"server secret"
ORIGIN = "ws://signal.test:80"


class Harness:
    def __init__(self, settings: SignalingSettings | None = None, wall: float = 1000.0) -> None:
        nonces = (n.to_bytes(32, "big") for n in itertools.count(1))
        self.router = Router(settings, new_nonce=lambda: next(nonces), wall_clock=lambda: wall)
        self.now = 0.0
        self.ids: dict[int, str] = {}
        self.pending: list[tuple[int, bytes]] = []

    def connect(self, identity: Identity | None = None, address: str = "") -> int:
        """Connect and prove an identity; returns the connection (its id is in ``ids``)."""
        identity = identity or Identity()
        conn = self.router.connect(self.now, address=address, origin=ORIGIN)
        self.send(conn, Hello(identity.public_key))
        self.pending += self.router.take_outgoing()
        data = self.pending.pop()  # the challenge, just sent to this connection
        challenge = decode_signaling(data[1], max_size=1 << 16)
        assert isinstance(challenge, Challenge)
        self.send(conn, Prove(identity.prove(ORIGIN, challenge.nonce)))
        self.ids[conn] = identity.peer_id
        return conn

    def send(self, conn: int, message: SignalingMessage | bytes) -> None:
        data = message if isinstance(message, bytes) else encode_signaling(message)
        self.router.receive(conn, data, self.now)

    def inbox(self) -> dict[int, list[SignalingMessage]]:
        boxes: dict[int, list[SignalingMessage]] = {}
        outgoing, self.pending = [*self.pending, *self.router.take_outgoing()], []
        for conn, data in outgoing:
            boxes.setdefault(conn, []).append(decode_signaling(data, max_size=1 << 20))
        return boxes


def test_ids_are_derived_from_proven_keys_and_rooms_announce_members() -> None:
    h = Harness()
    a, b, c = h.connect(), h.connect(), h.connect()
    assert h.inbox() == {conn: [Welcome(h.ids[conn])] for conn in (a, b, c)}
    assert len(set(h.ids.values())) == 3
    peer_1, peer_2 = h.ids[a], h.ids[b]
    h.send(a, Join("notes"))
    h.send(b, Join("notes"))
    h.send(c, Join("other"))
    assert h.inbox() == {
        a: [Joined("notes", frozenset()), PeerJoined("notes", peer_2)],
        b: [Joined("notes", frozenset({peer_1}))],
        c: [Joined("other", frozenset())],
    }
    h.send(b, Leave("notes"))
    assert h.inbox() == {a: [PeerLeft("notes", peer_2)]}
    h.router.disconnect(a)
    assert h.router.rooms == {"other": frozenset({h.ids[c]})}


def test_nobody_speaks_as_someone_else_but_a_peer_keeps_its_id() -> None:
    h = Harness()
    alice = Identity()
    first = h.connect(alice)
    h.send(first, Join("notes"))
    mallory = h.router.connect(0.0, origin=ORIGIN)
    h.send(mallory, Hello(alice.public_key))  # claims alice's key...
    h.send(mallory, Prove(Identity().sign(b"\x00" * 32)))  # ...but cannot sign with it
    h.inbox()
    assert h.router.take_closing() == [(mallory, 1008, "no valid proof of the key named in hello")]
    again = h.connect(alice)  # alice reconnects before her old connection timed out
    assert h.router.take_closing() == [
        (first, 4000, "replaced by a newer connection of the same peer")
    ]
    assert h.inbox()[again] == [Welcome(alice.peer_id)]


def test_signals_go_to_one_peer_of_the_same_room_only() -> None:
    h = Harness()
    a, b, c = h.connect(), h.connect(), h.connect()
    h.send(a, Join("notes"))
    h.send(b, Join("notes"))
    h.send(c, Join("other"))
    h.inbox()
    h.send(a, Signal("notes", h.ids[b], b"offer"))
    assert h.inbox() == {b: [Signal("notes", h.ids[a], b"offer")]}  # the server names the sender
    h.send(c, Signal("notes", h.ids[a], b"sneaky"))  # c is not in notes
    h.send(a, Signal("notes", h.ids[c], b"across rooms"))
    boxes = h.inbox()
    assert [type(m) for m in boxes[c]] == [Error]
    assert boxes[a] == [Error("no-such-peer", f"no peer {h.ids[c]!r} in room 'notes'")]
    assert b not in boxes


def test_tokens_admit_only_the_invited() -> None:
    h = Harness(SignalingSettings(token_secret=SECRET), wall=1000.0)
    conn = h.connect()
    h.inbox()
    h.send(conn, Join("notes"))
    h.send(conn, Join("notes", make_join_token(b"other secret", "notes", 2000)))
    h.send(conn, Join("notes", make_join_token(SECRET, "notes", 999)))
    h.send(conn, Join("notes", make_join_token(SECRET, "elsewhere", 2000)))
    refusals = [m for m in h.inbox()[conn] if isinstance(m, Error)]
    assert [m.message for m in refusals] == [
        "join token missing for room 'notes'",
        "join token forged for room 'notes'",
        "join token expired for room 'notes'",
        "join token forged for room 'notes'",
    ]
    h.send(conn, Join("notes", make_join_token(SECRET, "notes", 2000)))
    assert h.inbox()[conn] == [Joined("notes", frozenset())]


def test_limits_refuse_then_disconnect_the_persistent() -> None:
    h = Harness(
        SignalingSettings(max_peers_per_room=1, max_rooms_per_connection=1, max_violations=2)
    )
    a, b = h.connect(), h.connect()
    h.send(a, Join("one"))
    h.send(b, Join("one"))  # full
    h.send(a, Join("two"))  # too many rooms
    boxes = h.inbox()
    assert boxes[b][-1].code == "room-full"  # type: ignore[union-attr]
    assert boxes[a][-1].code == "too-many-rooms"  # type: ignore[union-attr]
    h.send(a, b"\xc1garbage")
    assert h.inbox()[a][-1].code == "malformed"  # type: ignore[union-attr]
    h.send(a, b"\xc1garbage")
    assert h.router.take_closing() == [(a, 1008, "too many refused requests (last: malformed)")]
    assert h.router.rooms == {}  # a left its room with its connection


def test_a_flood_is_rate_limited() -> None:
    h = Harness(SignalingSettings(messages_per_second=10, burst=20, max_violations=1000))
    conn = h.connect()
    h.inbox()
    for nonce in range(50):
        h.send(conn, Ping(nonce))
    replies = h.inbox()[conn]
    assert sum(isinstance(m, Pong) for m in replies) == 18  # the burst, less hello and prove
    assert sum(isinstance(m, Error) and m.code == "rate-limited" for m in replies) == 32
    h.now = 1.0  # ten more tokens a second later
    for nonce in range(12):
        h.send(conn, Ping(nonce))
    assert sum(isinstance(m, Pong) for m in h.inbox()[conn]) == 10


def test_hello_first_and_version_checked() -> None:
    h = Harness()
    conn = h.router.connect(0.0)
    h.send(conn, Join("notes"))
    assert h.router.take_closing() == [(conn, 1002, "the first message must be hello")]
    conn = h.router.connect(0.0)
    h.send(conn, Hello(Identity().public_key, version=9))
    assert h.inbox()[conn][0].code == "version"  # type: ignore[union-attr]
    assert h.router.take_closing()[0][1] == 1002


def test_idle_connections_are_dropped_on_time() -> None:
    h = Harness(SignalingSettings(idle_timeout=45.0))
    a = h.connect()
    h.now = 30.0
    b = h.connect()
    assert h.router.get_timer() == 45.0
    h.router.handle_timer(45.0)
    assert h.router.take_closing() == [(a, 1001, "idle for 45 s")]
    assert h.router.get_timer() == 75.0
    h.now = 60.0
    h.send(b, Ping(1))
    h.router.handle_timer(75.0)
    assert h.router.take_closing() == []


@pytest.mark.parametrize(
    "data",
    [b"", b"\x90", b"\x81\xa1t\xa5hello", b"\x82\xa1t\xa4join\xa4room\x01", b"\x81\xa1t\xa3xyz"],
)
def test_malformed_messages_are_refused_not_raised(data: bytes) -> None:
    h = Harness()
    conn = h.connect()
    h.inbox()
    h.send(conn, data)
    (refusal,) = h.inbox()[conn]
    assert isinstance(refusal, Error)
    assert refusal.code == "malformed"


def test_churn_is_answered_but_never_counted() -> None:
    """M2a: signals to peers that just left are refused as no-such-peer, never a violation."""
    h = Harness(SignalingSettings(max_violations=5))
    victim = h.connect()
    h.send(victim, Join("notes"))
    for _ in range(50):
        outsider = h.connect()
        h.send(outsider, Join("notes"))
        h.router.disconnect(outsider)
        h.send(victim, Signal("notes", h.ids[outsider], b"offer"))
    refusals = [m for m in h.inbox()[victim] if isinstance(m, Error)]
    assert [m.code for m in refusals] == ["no-such-peer"] * 50
    assert h.router.take_closing() == []


def test_refusals_are_forgiven_over_time() -> None:
    """M2b: a leaky bucket; five refusals a minute apart never add up to a disconnect."""
    settings = SignalingSettings(max_violations=5, violations_forgiven_per_second=1 / 60)
    h = Harness(settings)
    conn = h.connect()
    for minute in range(30):
        h.now = 60.0 * minute
        h.send(conn, Ping(minute))  # keeps it from idling out
        h.send(conn, b"\xc1")
    assert h.router.take_closing() == []
    for _ in range(5):
        h.send(conn, b"\xc1")  # a burst of six within a moment still closes
    assert h.router.take_closing() == [(conn, 1008, "too many refused requests (last: malformed)")]


def test_a_busy_target_refuses_the_sender_until_it_drains() -> None:
    """M2c: relays stop at send_queue_bytes of backlog; the sender hears target-busy."""
    h = Harness(SignalingSettings(send_queue_bytes=65536, max_violations=1))
    sender, target = h.connect(), h.connect()
    h.send(sender, Join("notes"))
    h.send(target, Join("notes"))
    h.inbox()
    for _ in range(5):
        h.send(sender, Signal("notes", h.ids[target], bytes(30_000)))
    boxes = h.inbox()
    assert len(boxes[target]) == 2
    assert [m.code for m in boxes[sender]] == ["target-busy"] * 3  # type: ignore[union-attr]
    assert h.router.take_closing() == []  # neither is closed: not a violation, not too slow
    h.router.sent(target, 1 << 20)  # the adapter wrote it all out
    h.send(sender, Signal("notes", h.ids[target], bytes(30_000)))
    assert len(h.inbox()[target]) == 1


def test_login_must_finish_within_the_login_deadline() -> None:
    """M3: hello without prove is closed at login_timeout, long before the idle timeout."""
    h = Harness(SignalingSettings(login_timeout=5.0, idle_timeout=45.0))
    silent = h.router.connect(0.0, origin=ORIGIN)
    half = h.router.connect(0.0, origin=ORIGIN)
    h.send(half, Hello(Identity().public_key))
    done = h.connect()  # logged in at 0.0: only idle after this
    assert h.router.get_timer() == 5.0
    h.router.handle_timer(5.0)
    assert h.router.take_closing() == [
        (silent, 1008, "login not finished within 5 s"),
        (half, 1008, "login not finished within 5 s"),
    ]
    assert h.router.get_timer() == 45.0
    h.router.handle_timer(45.0)
    assert h.router.take_closing() == [(done, 1001, "idle for 45 s")]


def test_deadlines_stay_exact_with_thousands_of_connections() -> None:
    """L5: the heap gives the exact next deadline; messages only move deadlines later."""
    seed = 1234
    print(f"seed {seed}")
    rng = __import__("random").Random(seed)
    h = Harness(SignalingSettings(idle_timeout=45.0, burst=1 << 20))
    conns = [h.connect() for _ in range(3000)]
    last = dict.fromkeys(conns, 0.0)
    for step in range(1, 2001):
        h.now = step * 0.01
        conn = rng.choice(conns)
        h.send(conn, Ping(step))
        last[conn] = h.now
        if step % 100 == 0:
            assert h.router.get_timer() == min(last.values()) + 45.0
    h.inbox()
    due = 45.0 + 10.0
    h.router.handle_timer(due)
    closed = {conn for conn, code, _ in h.router.take_closing() if code == 1001}
    assert closed == {conn for conn, seen in last.items() if seen + 45.0 <= due}
    assert h.router.get_timer() == min(s for c, s in last.items() if c not in closed) + 45.0


def test_one_address_fills_at_most_a_few_seats_of_a_room() -> None:
    """M4: max_joins_per_room_per_address; other addresses still get in."""
    h = Harness(SignalingSettings(max_joins_per_room_per_address=2))
    squatters = [h.connect(address="198.51.100.7") for _ in range(3)]
    for conn in squatters:
        h.send(conn, Join("notes"))
    boxes = h.inbox()
    assert boxes[squatters[2]][-1] == Error(
        "address-crowded", "room 'notes' has 2 peers from this address, the most allowed"
    )
    invited = h.connect()
    h.send(invited, Join("notes"))
    assert isinstance(h.inbox()[invited][-1], Joined)
    h.router.disconnect(squatters[0])  # a seat freed is a seat for that address again
    h.send(squatters[2], Join("notes"))
    assert isinstance(h.inbox()[squatters[2]][-1], Joined)


def test_tokens_bound_to_a_peer_admit_only_that_peer() -> None:
    """M4: one bearer token admits any identity; a bound one only the peer it names."""
    h = Harness(SignalingSettings(token_secret=SECRET), wall=1000.0)
    alice, mallory = Identity(), Identity()
    a, m = h.connect(alice), h.connect(mallory)
    h.inbox()
    bound = make_join_token(SECRET, "notes", 2000, peer_id=alice.peer_id)
    h.send(m, Join("notes", bound))
    assert h.inbox()[m] == [Error("token", "join token for another peer for room 'notes'")]
    h.send(a, Join("notes", bound))
    assert h.inbox()[a] == [Joined("notes", frozenset())]
