"""y-webrtc room signaling: who offers, glare tokens, trickled candidates, hostile payloads."""

from __future__ import annotations

import random

import pytest

from crdtsync.protocol.ywebrtc_room import (
    GLARE_HANDICAP_MS,
    GLARE_WAIT,
    GLARE_WINDOW,
    AcceptOffer,
    Dial,
    DropOffer,
    RemoteAnswer,
    RemoteCandidate,
    YWebrtcRoom,
    parse_candidate,
)

UDP = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0"
TCP = "candidate:2 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active"


def room(peer_id: str = "me", max_conns: int = 20) -> YWebrtcRoom:
    return YWebrtcRoom(peer_id, max_conns=max_conns, rng=random.Random(1))


def offer(sender: str, token: float, to: str = "me") -> dict[str, object]:
    return {
        "type": "signal",
        "from": sender,
        "to": to,
        "token": token,
        "signal": {"type": "offer", "sdp": "v=0 ..."},
    }


def test_announce_on_connect_and_dial_whoever_announces() -> None:
    r = room()
    assert r.announce(0.0) == {"type": "announce", "from": "me"}
    assert r.receive({"type": "announce", "from": "them"}, 60.0) == [Dial("them")]
    assert r.connections == {"them"}
    r.connection_opened("them")
    assert r.receive({"type": "announce", "from": "them"}, 60.0) == []  # linked already


def test_an_announce_during_setup_starts_it_over() -> None:
    """A y-webrtc peer announces only while it lacks connections: it gave our setup up."""
    r = room(max_conns=1)
    assert r.receive({"type": "announce", "from": "them"}, 0.0) == [Dial("them")]
    assert r.receive({"type": "announce", "from": "them"}, 0.0) == [Dial("them")]
    assert r.connections == {"them"}
    assert r.receive({"type": "announce", "from": "other"}, 0.0) == []  # still full


def test_max_conns_applies_to_announces_not_to_offers() -> None:
    r = room(max_conns=1)
    assert r.receive({"type": "announce", "from": "one"}, 0.0) == [Dial("one")]
    assert r.receive({"type": "announce", "from": "two"}, 0.0) == []
    assert r.announce(0.0) is None  # a full peer stops announcing
    assert r.receive(offer("three", 1.0), 0.0) == [AcceptOffer("three", "v=0 ...")]


def test_glare_the_larger_token_wins() -> None:
    r = room()
    r.receive({"type": "announce", "from": "them"}, 0.0)
    ours = r.signal("them", {"type": "offer", "sdp": "ours"}, now_ms=5000.0)
    token = ours["token"]
    assert isinstance(token, float)
    # Our offers' tokens are a second early: a y-webrtc peer that offers at the same moment
    # wins, and we answer it (simple-peer cannot always roll back its own offer).
    assert 5000.0 - GLARE_HANDICAP_MS <= token < 5001.0 - GLARE_HANDICAP_MS
    assert r.receive(offer("them", 5000.0), 0.0) == [AcceptOffer("them", "v=0 ...")]
    r.receive({"type": "announce", "from": "other"}, 0.0)
    ours = r.signal("other", {"type": "offer", "sdp": "ours"}, now_ms=5000.0)
    token = ours["token"]
    assert isinstance(token, float)
    assert r.receive(offer("other", token - 1), 0.0) == [DropOffer("other")]
    assert r.receive(offer("other", token + 1), 0.0) == [AcceptOffer("other", "v=0 ...")]


def test_answers_draw_their_token_from_the_clock() -> None:
    r = room()
    r.receive(offer("them", 1.0), 0.0)
    answer = r.signal("them", {"type": "answer", "sdp": "a"}, now_ms=5000.0)
    assert 5000.0 <= answer["token"] < 5001.0


def test_answers_clear_the_token_and_only_answer_our_offers() -> None:
    r = room()
    answer = {
        "type": "signal",
        "from": "them",
        "to": "me",
        "signal": {"type": "answer", "sdp": "a"},
    }
    assert r.receive(answer, 0.0) == []  # we offered nothing
    r.receive({"type": "announce", "from": "them"}, 0.0)
    r.signal("them", {"type": "offer", "sdp": "ours"}, now_ms=5.0)
    assert r.receive(answer, 0.0) == [RemoteAnswer("them", "a")]
    # With the token cleared, a later offer from them is taken (renegotiation).
    assert r.receive(offer("them", 0.0), 0.0) == [AcceptOffer("them", "v=0 ...")]


def test_trickled_udp_candidates_pass_tcp_and_end_of_candidates_do_not() -> None:
    r = room()
    r.receive(offer("them", 1.0), 0.0)

    def candidate(value: object) -> dict[str, object]:
        return {
            "type": "signal",
            "from": "them",
            "to": "me",
            "signal": {"type": "candidate", "candidate": value},
        }

    udp = {"candidate": UDP, "sdpMid": "0", "sdpMLineIndex": 0}
    assert r.receive(candidate(udp), 0.0) == [RemoteCandidate("them", UDP[10:], "0", 0)]
    assert r.receive(candidate({"candidate": TCP, "sdpMid": "0", "sdpMLineIndex": 0}), 0.0) == []
    assert r.receive(candidate(None), 0.0) == []
    assert r.receive(candidate({"candidate": "", "sdpMid": "0"}), 0.0) == []


def test_payloads_for_others_or_from_ourselves_are_ignored() -> None:
    r = room()
    assert r.receive(offer("them", 1.0, to="someone-else"), 0.0) == []
    assert r.receive({"type": "announce", "from": "me"}, 0.0) == []
    assert r.connections == frozenset()


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "a string",
        [],
        {},
        {"type": "announce"},
        {"type": "announce", "from": 7},
        {"type": "announce", "from": "x" * 500},
        {"type": "signal", "from": "them", "to": "me"},
        {"type": "signal", "from": "them", "to": "me", "signal": "offer"},
        {"type": "signal", "from": "them", "to": "me", "signal": {"type": "offer", "sdp": 5}},
        {"type": "signal", "from": "them", "to": "me", "signal": {"type": "renegotiate"}},
        {"type": "mystery", "from": "them"},
    ],
)
def test_hostile_payloads_do_nothing(payload: object) -> None:
    r = room()
    assert r.receive(payload, 0.0) == []
    assert r.connections == frozenset()


def test_a_closed_connection_announces_again() -> None:
    r = room(max_conns=1)
    r.receive({"type": "announce", "from": "one"}, 0.0)
    assert r.announce(0.0) is None
    assert r.connection_closed("one", 0.0) == {"type": "announce", "from": "me"}


@pytest.mark.parametrize(
    "value",
    [
        {"candidate": UDP, "sdpMid": 0},
        {"candidate": UDP, "sdpMLineIndex": "0"},
        {"candidate": UDP},
        {"candidate": "candidate:1 1 udp"},
        {"candidate": "candidate:" + "9 " * 600},
    ],
)
def test_parse_candidate_refuses_what_aioice_cannot_use(value: object) -> None:
    assert parse_candidate(value) is None


def trickled(sender: str, line: str) -> dict[str, object]:
    return {
        "type": "signal",
        "from": sender,
        "to": "me",
        "signal": {"candidate": {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}},
    }


def test_a_connection_takes_at_most_16_remote_candidates() -> None:
    """In its description and trickled together: past that, each would be STUN checks to an
    address and port the sender picked."""
    r = room()
    lines = "".join(
        f"a=candidate:{n} 1 udp 1 127.0.0.1 {20000 + n} typ host\r\n" for n in range(10)
    )
    flooded = offer("them", 1.0)
    flooded["signal"] = {"type": "offer", "sdp": "v=0\r\n" + lines}
    [accepted] = r.receive(flooded, 0.0)
    assert isinstance(accepted, AcceptOffer)
    assert accepted.sdp.count("a=candidate:") == 10
    taken = [
        r.receive(trickled("them", f"candidate:{n} 1 udp 1 127.0.0.1 {30000 + n} typ host"), 0.0)
        for n in range(200)
    ]
    assert sum(len(actions) for actions in taken) == 6
    assert taken[5]
    assert not taken[6]


def test_offers_are_answered_within_the_budget() -> None:
    """A flood from one id gets four answers, then two a second; fresh ids fill at most 24
    pending answers, and the room still dials the newcomer who announces."""
    r = room()
    same = [r.receive(offer("mallory", 1.0), 0.0) for _ in range(190)]
    assert sum(len(actions) for actions in same) == 4
    assert r.budget.pending_answers == 1
    assert r.receive(offer("mallory", 1.0), 0.5) == [AcceptOffer("mallory", "v=0 ...")]
    fresh = [r.receive(offer(f"fake-{n}", 1.0), 1.0) for n in range(100)]
    assert sum(len(actions) for actions in fresh) == 23  # with mallory's, 24 pending
    assert r.receive({"type": "announce", "from": "newcomer"}, 1.0) == [Dial("newcomer")]
    r.connection_opened("newcomer")
    r.connection_closed("mallory", 0.0)
    assert r.budget.pending == 23


def test_right_after_our_announce_our_offer_waits_for_theirs() -> None:
    """Both may have heard the other: their offer gets a moment to come first (no glare)."""
    r = room()
    r.announce(0.0)
    assert r.receive({"type": "announce", "from": "them"}, 0.01) == [Dial("them", GLARE_WAIT)]
    assert r.receive(offer("them", 1.0), 0.02) == [AcceptOffer("them", "v=0 ...")]
    # A newcomer that announces later never heard ours: dialed at once.
    assert r.receive({"type": "announce", "from": "other"}, GLARE_WINDOW) == [Dial("other")]
