"""The dial policy: who dials whom, partial meshes, and backoff, in virtual time."""

from __future__ import annotations

import random

from crdtsync.protocol.dialing import VIOLATION_PENALTY, DialPolicy


def policy(local_id: str = "m", max_conns: int = 20, seed: int = 1) -> DialPolicy:
    return DialPolicy(
        local_id,
        max_conns=max_conns,
        reconnect_base=0.1,
        reconnect_cap=5.0,
        rng=random.Random(seed),
    )


def test_in_a_full_mesh_the_smaller_id_dials() -> None:
    members = {"a", "b", "x", "z"}
    dials, retry_at = policy("m").due(0.0, members, busy=set())
    assert dials == ["x", "z"]
    assert retry_at is None
    assert policy("m").due(0.0, members, busy={"x"})[0] == ["z"]


def test_a_partial_mesh_keeps_the_ring_successor_and_a_stable_subset() -> None:
    members = {f"p{n:02}" for n in range(30)}
    p = policy("p10", max_conns=5, seed=3)
    wanted, musts = p.wanted(members - {"p10"})
    assert wanted[0] == "p11"
    assert musts == 1
    dials, _ = p.due(0.0, members - {"p10"}, busy=set())
    assert len(dials) == 5
    assert dials[0] == "p11"
    assert p.due(0.0, members - {"p10"}, busy=set())[0] == dials  # stable while members last
    # Even when full, the must (the successor) is dialed.
    assert p.due(0.0, members - {"p10"}, busy=set(dials[1:]) | {"p99", "p98"})[0] == ["p11"]


def test_backoff_doubles_with_jitter_and_ends_when_linked() -> None:
    p = policy("a")
    delays = []
    for _ in range(8):
        p.failed("b", 0.0)
        dials, retry_at = p.due(0.0, {"b"}, busy=set())
        assert dials == []
        assert retry_at is not None
        delays.append(retry_at)
    assert all(0.05 <= delay <= 5.0 for delay in delays)
    assert delays[-1] >= 2.5  # capped at 5 s, jittered down to half at most
    assert p.due(delays[-1], {"b"}, busy=set())[0] == ["b"]
    p.linked("b")
    assert p.due(0.0, {"b"}, busy=set())[0] == ["b"]


def test_an_offender_waits_longer_and_a_peer_that_left_starts_over() -> None:
    honest, offender = policy("a", seed=4), policy("a", seed=4)
    offender.violated("b")
    honest.failed("b", 0.0)
    offender.failed("b", 0.0)
    honest_at = honest.due(0.0, {"b"}, busy=set())[1]
    offender_at = offender.due(0.0, {"b"}, busy=set())[1]
    assert honest_at is not None
    assert offender_at is not None
    assert offender_at == honest_at * 2**VIOLATION_PENALTY  # same seed, same jitter
    offender.members_changed(set())
    assert offender.due(0.0, {"b"}, busy=set()) == (["b"], None)


def test_backoff_counts_from_the_start_of_the_dial_that_failed() -> None:
    """A dial that spent 15 s on a dead network is followed at once: the link returns as soon
    as the network does, and dials still come no faster than the backoff allows."""
    p = policy("a")
    for attempt in range(10):  # a long outage: the backoff has grown to its 5 s cap
        p.failed("b", 100.0 * attempt)
    p.dialed("b", 1000.0)
    p.failed("b", 1015.0)  # the connect timeout ran out
    assert p.due(1015.0, {"b"}, busy=set()) == (["b"], None)
    p.dialed("b", 2000.0)
    p.failed("b", 2000.5)  # failed fast (refused): it still waits 2.5 to 5 s from its start
    dials, retry_at = p.due(2000.5, {"b"}, busy=set())
    assert dials == []
    assert retry_at is not None
    assert 2002.5 <= retry_at <= 2005.0


def test_a_lost_link_backs_off_from_when_it_was_lost() -> None:
    p = policy("a")
    p.dialed("b", 0.0)
    p.linked("b")  # the dial opened a link: its start no longer counts
    p.failed("b", 50.0)  # that link was lost
    dials, retry_at = p.due(50.0, {"b"}, busy=set())
    assert dials == []
    assert retry_at is not None
    assert 50.05 <= retry_at <= 50.1
