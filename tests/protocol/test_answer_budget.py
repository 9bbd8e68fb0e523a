"""The answer budget, the replay guard and the candidate cap, in virtual time: no event loop."""

from __future__ import annotations

import random

import pytest

from crdtsync.errors import ConfigError
from crdtsync.protocol.answer_budget import (
    Admitted,
    AnswerBudget,
    Refused,
    ReplayGuard,
    cap_candidates,
)


def admitted(verdict: Admitted | Refused) -> Admitted:
    assert isinstance(verdict, Admitted), verdict
    return verdict


def test_one_pending_answer_per_remote_the_newer_offer_replaces_it() -> None:
    budget = AnswerBudget()
    first = admitted(budget.offer_received("mallory", 0.0))
    second = admitted(budget.offer_received("mallory", 0.0))
    assert (first.replaces, second.replaces) == (None, first.ticket)
    assert (budget.pending, budget.pending_answers, budget.peak_pending) == (1, 1, 1)
    budget.settled(first.ticket)  # the replaced one ending late changes nothing
    assert budget.pending == 1
    budget.settled(second.ticket)
    assert budget.pending == 0


def test_a_flooding_remote_gets_its_burst_then_its_rate() -> None:
    budget = AnswerBudget(answers_per_second=2.0, answer_burst=4)
    verdicts = [budget.offer_received("mallory", 0.0) for _ in range(190)]
    assert sum(isinstance(v, Admitted) for v in verdicts) == 4
    assert isinstance(verdicts[-1], Refused)
    assert "2 answers/s to mallory" in verdicts[-1].reason
    # Then 45 offers a second from 1 s to 11 s: two answers a second, whatever is sent.
    answered = sum(
        isinstance(budget.offer_received("mallory", 1.0 + n / 45), Admitted) for n in range(450)
    )
    assert answered == 21  # 2/s from the burst at 0 s to the last offer at 10.98 s
    assert budget.peak_pending == 1
    assert isinstance(budget.offer_received("newcomer", 11.0), Admitted)  # others unaffected


def test_answers_in_all_are_capped_and_leave_room_for_dials() -> None:
    budget = AnswerBudget(max_pending=32, max_pending_answers=24)
    rng = random.Random(7)
    ids = [f"fake-{rng.getrandbits(64):x}" for _ in range(100)]  # y-webrtc ids are self-declared
    verdicts = [budget.offer_received(remote, 0.0) for remote in ids]
    assert sum(isinstance(v, Admitted) for v in verdicts) == 24
    assert "24 answers and 24 setups pending" in str(verdicts[24])
    dials = [budget.dial_started(f"peer-{n}") for n in range(9)]
    assert [isinstance(d, Admitted) for d in dials] == [True] * 8 + [False]
    assert budget.pending == budget.peak_pending == 32


def test_answers_in_all_stay_under_the_total_rate() -> None:
    budget = AnswerBudget(total_answers_per_second=20.0, total_answer_burst=40)
    answered = 0
    for n in range(45 * 10):  # fresh ids at 45/s for 10 s, each settled at once
        verdict = budget.offer_received(f"fake-{n}", n / 45)
        if isinstance(verdict, Admitted):
            answered += 1
            budget.settled(verdict.ticket)
    assert answered == 40 + 200 - 1  # the burst, then 20/s (the last token not yet refilled)
    assert budget.refused == 450 - answered


def test_limits_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_pending_answers"):
        AnswerBudget(max_pending=8, max_pending_answers=9)
    with pytest.raises(ConfigError, match="rates"):
        AnswerBudget(answers_per_second=0)


def test_the_replay_guard_refuses_old_future_and_seen_offers() -> None:
    guard = ReplayGuard(window=30.0)
    assert guard.check(b"a" * 16, 1000.0, 1000.0) is None
    guard.seen(b"a" * 16, 1000.0)
    assert guard.check(b"a" * 16, 1000.0, 1001.0) == "offer id seen before (a replay)"
    assert "outside the ±30 s window" in str(guard.check(b"b" * 16, 969.0, 1000.0))
    assert "outside" in str(guard.check(b"b" * 16, 1031.0, 1000.0))
    assert guard.check(b"b" * 16, 1029.0, 1000.0) is None  # 29 s of skew is allowed
    # An id is kept while its offer could still pass the age check: sent "in the future"
    # by a skewed clock, an offer seen at 1000 s stays fresh until 1059 s.
    guard.seen(b"c" * 16, 1000.0)
    assert guard.check(b"c" * 16, 1029.0, 1058.0) == "offer id seen before (a replay)"
    assert "outside" in str(guard.check(b"c" * 16, 1029.0, 1060.1))


SDP = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n{}a=end-of-candidates\r\n"


def test_candidates_past_the_cap_are_stripped() -> None:
    lines = "".join(
        f"a=candidate:{n} 1 udp {n} 127.0.0.1 {10000 + n} typ host\r\n" for n in range(200)
    )
    capped, kept, dropped = cap_candidates(SDP.format(lines), 16)
    assert (kept, dropped) == (16, 184)
    assert capped.count("a=candidate:") == 16
    assert "10015 typ host" in capped
    assert "10016 typ host" not in capped
    assert capped.endswith("a=end-of-candidates\r\n")
    assert cap_candidates(SDP.format(""), 16) == (SDP.format(""), 0, 0)
    assert cap_candidates(SDP.format(lines), 0)[1:] == (0, 200)
