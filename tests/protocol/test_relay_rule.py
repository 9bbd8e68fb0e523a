"""The relay rule on plain data: whole rooms simulated as graphs, first copies acting."""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping

import pytest

from crdtsync.protocol.relay import Sources, flood_targets, merge_sources, update_targets

Graph = dict[str, frozenset[str]]


def random_room(rng: random.Random, size: int, dials: int) -> Graph:
    """A ring plus ``dials`` random links per peer, as the dial policy builds rooms."""
    names = [f"p{index:02d}" for index in range(size)]
    links: dict[str, set[str]] = {name: set() for name in names}
    for index, name in enumerate(names):
        others = [other for other in names if other != name]
        wanted = [names[(index + 1) % size], *rng.sample(others, min(dials, size - 1))]
        for other in list(dict.fromkeys(wanted))[:dials]:
            links[name].add(other)
            links[other].add(name)
    return {name: frozenset(others) for name, others in links.items()}


def spread(
    graph: Graph,
    source: str,
    rng: random.Random,
    *,
    views: Mapping[str, Graph] | None = None,
    sources: Sources = None,
) -> tuple[set[str], int]:
    """Deliver one edit of ``source`` with random delays; each peer acts on its first copy,
    as the replica drops duplicates. ``views[peer]`` is what each peer believes of its
    neighbours' lists (default: the truth). Returns who got it and the messages sent."""
    label = frozenset({source}) if sources is None else sources
    reached = {source}
    queue: list[tuple[float, int, str, str]] = []
    sent = 0
    order = 0

    def relay(peer: str, arrival: str | None, now: float) -> None:
        nonlocal sent, order
        view = (views or {}).get(peer, graph)
        lists = {remote: view[remote] for remote in graph[peer]}
        labelled: Sources = frozenset({peer}) if arrival is None else label
        for remote in update_targets(peer, lists, sources=labelled, arrival=arrival):
            sent += 1
            order += 1
            heapq.heappush(queue, (now + rng.uniform(0.5, 1.5), order, remote, peer))

    relay(source, None, 0.0)
    while queue:
        now, _, peer, sender = heapq.heappop(queue)
        if peer not in reached:
            reached.add(peer)
            relay(peer, sender, now)
    return reached, sent


def test_own_edits_and_content_of_unknown_link_go_to_every_link() -> None:
    lists = {"b": frozenset({"c"}), "c": frozenset({"b"})}
    assert update_targets("a", lists, sources=frozenset({"a"}), arrival=None) == {"b", "c"}
    assert update_targets("a", lists, sources=None, arrival=None) == {"b", "c"}


def test_a_neighbour_of_the_source_skips_the_source_s_own_neighbours() -> None:
    # a - s - b and a - c (b is not a's neighbour): s reaches b itself; a relays to c.
    lists = {"s": frozenset({"a", "b"}), "c": frozenset({"a"})}
    assert update_targets("a", lists, sources=frozenset({"s"}), arrival="s") == {"c"}


def test_exactly_one_neighbour_of_the_source_relays_to_each_peer_beyond() -> None:
    """Every relay computes the same ranking from the same lists: one of them sends."""
    relays = [f"r{index}" for index in range(6)]
    graph: Graph = {"s": frozenset(relays), "w": frozenset(relays)}
    for relay in relays:
        graph[relay] = frozenset({"s", "w"})
    senders = [
        relay
        for relay in relays
        if "w"
        in update_targets(
            relay,
            {remote: graph[remote] for remote in graph[relay]},
            sources=frozenset({"s"}),
            arrival="s",
        )
    ]
    assert len(senders) == 1


@pytest.mark.parametrize("seed", range(20))
def test_every_peer_gets_every_edit_in_rooms_sparse_and_dense(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.choice([5, 12, 32, 60])
    graph = random_room(rng, size, rng.choice([1, 2, 3, 8]))
    for source in rng.sample(sorted(graph), 5):
        reached, _ = spread(graph, source, rng)
        assert reached == set(graph), f"seed {seed}: {source}'s edit missed {set(graph) - reached}"


@pytest.mark.parametrize("seed", range(10))
def test_updates_of_unknown_or_several_sources_reach_everyone(seed: int) -> None:
    rng = random.Random(seed)
    graph = random_room(rng, rng.choice([12, 32]), rng.choice([1, 3, 8]))
    source, other = rng.sample(sorted(graph), 2)
    for label in (None, frozenset({source, other})):
        reached, _ = spread(graph, source, rng, sources=label)
        assert reached == set(graph), f"seed {seed}: missed {set(graph) - reached}"


@pytest.mark.parametrize("seed", range(10))
def test_lists_that_lack_new_links_lose_nothing(seed: int) -> None:
    """Each peer's view misses a random tenth of the links (not announced yet): peers then
    send more, never less, than they need to."""
    rng = random.Random(seed)
    graph = random_room(rng, 32, rng.choice([2, 8]))
    views: dict[str, Graph] = {}
    for peer in graph:
        views[peer] = {
            name: frozenset(other for other in others if rng.random() > 0.1)
            for name, others in graph.items()
        }
    for source in rng.sample(sorted(graph), 4):
        reached, _ = spread(graph, source, rng, views=views)
        assert reached == set(graph), f"seed {seed}: missed {set(graph) - reached}"


@pytest.mark.parametrize(("dials", "bound"), [(8, 1.3), (20, 1.05)])
def test_an_edit_costs_about_one_message_per_peer(dials: int, bound: float) -> None:
    """In rooms of 32 such as ``max_conns`` 8 and 20 build, relaying costs at most ``bound``
    times a spanning tree's N - 1 messages (the old rule cost 4-8 times)."""
    rng = random.Random(dials)
    graph = random_room(rng, 32, dials)
    sent = sum(spread(graph, source, rng)[1] for source in graph)
    assert sent / len(graph) <= bound * (len(graph) - 1)


def test_sources_merge_and_unknown_absorbs() -> None:
    assert merge_sources(frozenset({"a"}), frozenset({"b"})) == {"a", "b"}
    assert merge_sources(frozenset({"a"}), None) is None


def test_presence_skips_the_arrival_peer_s_neighbours() -> None:
    lists = {"p": frozenset({"b"}), "b": frozenset({"p"}), "c": frozenset()}
    assert flood_targets(lists, "p") == {"c"}
    assert flood_targets(lists, None) == {"p", "b", "c"}
