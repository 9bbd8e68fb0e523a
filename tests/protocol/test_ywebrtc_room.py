"""y-webrtc room signaling: who offers, glare tokens, trickled candidates, hostile payloads."""

from __future__ import annotations

import random

import pytest

from crdtsync.protocol.ywebrtc_room import (
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
    assert r.announce() == {"type": "announce", "from": "me"}
    assert r.receive({"type": "announce", "from": "them"}) == [Dial("them")]
    assert r.receive({"type": "announce", "from": "them"}) == []  # already connecting
    assert r.connections == {"them"}


def test_max_conns_applies_to_announces_not_to_offers() -> None:
    r = room(max_conns=1)
    assert r.receive({"type": "announce", "from": "one"}) == [Dial("one")]
    assert r.receive({"type": "announce", "from": "two"}) == []
    assert r.announce() is None  # a full peer stops announcing
    assert r.receive(offer("three", 1.0)) == [AcceptOffer("three", "v=0 ...")]


def test_glare_the_larger_token_wins() -> None:
    r = room()
    r.receive({"type": "announce", "from": "them"})
    ours = r.signal("them", {"type": "offer", "sdp": "ours"}, now_ms=1000.0)
    token = ours["token"]
    assert isinstance(token, float)
    assert 1000.0 <= token < 1001.0
    assert r.receive(offer("them", token - 1)) == [DropOffer("them")]
    assert r.receive(offer("them", token + 1)) == [AcceptOffer("them", "v=0 ...")]


def test_answers_clear_the_token_and_only_answer_our_offers() -> None:
    r = room()
    answer = {
        "type": "signal",
        "from": "them",
        "to": "me",
        "signal": {"type": "answer", "sdp": "a"},
    }
    assert r.receive(answer) == []  # we offered nothing
    r.receive({"type": "announce", "from": "them"})
    r.signal("them", {"type": "offer", "sdp": "ours"}, now_ms=5.0)
    assert r.receive(answer) == [RemoteAnswer("them", "a")]
    # With the token cleared, a later offer from them is taken (renegotiation).
    assert r.receive(offer("them", 0.0)) == [AcceptOffer("them", "v=0 ...")]


def test_trickled_udp_candidates_pass_tcp_and_end_of_candidates_do_not() -> None:
    r = room()
    r.receive(offer("them", 1.0))

    def candidate(value: object) -> dict[str, object]:
        return {
            "type": "signal",
            "from": "them",
            "to": "me",
            "signal": {"type": "candidate", "candidate": value},
        }

    udp = {"candidate": UDP, "sdpMid": "0", "sdpMLineIndex": 0}
    assert r.receive(candidate(udp)) == [RemoteCandidate("them", UDP[10:], "0", 0)]
    assert r.receive(candidate({"candidate": TCP, "sdpMid": "0", "sdpMLineIndex": 0})) == []
    assert r.receive(candidate(None)) == []
    assert r.receive(candidate({"candidate": "", "sdpMid": "0"})) == []


def test_payloads_for_others_or_from_ourselves_are_ignored() -> None:
    r = room()
    assert r.receive(offer("them", 1.0, to="someone-else")) == []
    assert r.receive({"type": "announce", "from": "me"}) == []
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
    assert r.receive(payload) == []
    assert r.connections == frozenset()


def test_a_closed_connection_announces_again() -> None:
    r = room(max_conns=1)
    r.receive({"type": "announce", "from": "one"})
    assert r.announce() is None
    assert r.connection_closed("one") == {"type": "announce", "from": "me"}


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
