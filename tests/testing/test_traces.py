"""Trace loading and conversion: every replay must reproduce the trace's end content."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from crdtsync.errors import ConfigError
from crdtsync.protocol.ymessages import read_state_vector, read_var_uint
from crdtsync.testing.traces import (
    TEXT_NAME,
    AgentUpdate,
    ConcurrentTrace,
    ConcurrentTxn,
    SequentialTrace,
    apply_patches,
    bundled_trace_path,
    client_id_for_agent,
    concurrent_updates,
    load_trace,
)

Converted = tuple[ConcurrentTrace, list[AgentUpdate]]


@pytest.fixture(scope="module", params=["friendsforever", "clownschool"])
def converted(request: pytest.FixtureRequest) -> Converted:
    trace = load_trace(bundled_trace_path(request.param))
    assert isinstance(trace, ConcurrentTrace)
    return trace, concurrent_updates(trace)


def text_after(updates: list[bytes]) -> str:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get(TEXT_NAME, type=pycrdt.Text))


def struct_clients(update: bytes) -> set[int]:
    """The client ids of the structs in a Yjs v1 update.

    ``pycrdt.get_state(update)`` is no help: it skips a client whose structs do not start at
    clock 0. The update begins with the number of per-client struct groups, then the first
    group's struct count and client; zero or one group can be read without decoding structs.
    """
    groups, offset = read_var_uint(update, 0)
    assert groups <= 1, f"structs of {groups} clients in one txn's update"
    if not groups:
        return set()
    _, offset = read_var_uint(update, offset)
    client, _ = read_var_uint(update, offset)
    return {client}


def test_bundled_traces_convert_to_their_end_content(converted: Converted) -> None:
    trace, updates = converted
    assert len(updates) == len(trace.txns)
    assert [item.agent for item in updates] == [txn.agent for txn in trace.txns]
    assert text_after([item.update for item in updates]) == trace.end_content


def test_each_update_carries_only_its_authors_client_id(converted: Converted) -> None:
    trace, updates = converted
    for index, (txn, item) in enumerate(zip(trace.txns, updates, strict=True)):
        inserts = any(inserted for _, _, inserted in txn.patches)
        expected = {client_id_for_agent(item.agent)} if inserts else set()
        assert struct_clients(item.update) == expected, index


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_any_interleaving_of_the_authors_converges(converted: Converted, seed: int | None) -> None:
    """Seed None: one author's txns after another's; else a random merge of their orders."""
    trace, updates = converted
    queues = [[u.update for u in updates if u.agent == a] for a in range(trace.num_agents)]
    if seed is None:
        order = [update for queue in reversed(queues) for update in queue]
    else:
        rng = random.Random(seed)
        order, heads = [], [0] * len(queues)
        while live := [a for a, queue in enumerate(queues) if heads[a] < len(queue)]:
            agent = rng.choice(live)
            take = rng.randint(1, 200)
            order += queues[agent][heads[agent] : heads[agent] + take]
            heads[agent] += take
    assert len(order) == len(updates)
    assert text_after(order) == trace.end_content


FORK_AND_MERGE: dict[str, Any] = {
    "kind": "concurrent",
    "endContent": "Hello, dear world!",
    "numAgents": 2,
    "txns": [
        {"parents": [], "agent": 0, "patches": [[0, 0, "Hello world"]]},
        {"parents": [0], "agent": 0, "patches": [[5, 0, ","]]},  # concurrent with 2
        {"parents": [0], "agent": 1, "patches": [[11, 0, "!"]]},
        {"parents": [1, 2], "agent": 1, "patches": [[7, 0, "dear "]]},  # the merge
        {"parents": [3], "agent": 0, "patches": []},  # a txn that changes nothing
    ],
}


@pytest.fixture
def fork_and_merge(tmp_path: Path) -> ConcurrentTrace:
    path = tmp_path / "fork.json"
    path.write_text(json.dumps(FORK_AND_MERGE))
    trace = load_trace(path)
    assert isinstance(trace, ConcurrentTrace)
    return trace


def test_a_fork_and_a_merge_converge(fork_and_merge: ConcurrentTrace) -> None:
    updates = [item.update for item in concurrent_updates(fork_and_merge)]
    assert text_after(updates) == "Hello, dear world!"
    assert text_after(updates[::-1]) == "Hello, dear world!"


def test_each_update_is_made_on_its_parents_state(fork_and_merge: ConcurrentTrace) -> None:
    """Applied after exactly its ancestors, a txn's update integrates at once (none pending)
    and adds only its author's inserted characters."""
    updates = [item.update for item in concurrent_updates(fork_and_merge)]
    ancestors: list[set[int]] = []
    for index, txn in enumerate(fork_and_merge.txns):
        ancestors.append({index}.union(*(ancestors[parent] for parent in txn.parents)))
        doc: pycrdt.Doc[Any] = pycrdt.Doc()
        for earlier in sorted(ancestors[index] - {index}):
            doc.apply_update(updates[earlier])
        before = read_state_vector(doc.get_state())
        doc.apply_update(updates[index])
        client = client_id_for_agent(txn.agent)
        inserted = sum(len(ins) for _, _, ins in txn.patches)
        expected = before | {client: before.get(client, 0) + inserted} if inserted else before
        assert read_state_vector(doc.get_state()) == expected, index


@pytest.mark.parametrize(
    ("txns", "problem"),
    [
        ((ConcurrentTxn((1,), 0, ()), ConcurrentTxn((), 1, ())), "not an earlier txn"),
        ((ConcurrentTxn((), 2, ()),), "numAgents is 2"),
        # Agent 0's second txn forgets its first: ancestors would no longer be prefixes.
        ((ConcurrentTxn((), 0, ()), ConcurrentTxn((), 0, ())), "does not descend"),
    ],
)
def test_concurrent_updates_rejects_impossible_histories(
    txns: tuple[ConcurrentTxn, ...], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        concurrent_updates(ConcurrentTrace("", 2, txns))


SEQUENTIAL = {
    "startContent": "",
    "endContent": "abXd!",
    "txns": [
        {"time": "t", "patches": [[0, 0, "abcd"]]},
        {"time": "t", "patches": [[2, 1, "X"], [4, 0, "!"]]},
    ],
}


@pytest.mark.parametrize("gzipped", [True, False])
def test_sequential_trace_reaches_its_end_content(tmp_path: Path, gzipped: bool) -> None:
    content = json.dumps(SEQUENTIAL).encode()
    path = tmp_path / "seq.json"
    path.write_bytes(gzip.compress(content) if gzipped else content)
    trace = load_trace(path)
    assert isinstance(trace, SequentialTrace)
    assert len(trace.txns) == 2
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get(TEXT_NAME, type=pycrdt.Text)
    text += trace.start_content
    for patches in trace.txns:
        apply_patches(text, patches)
    assert str(text) == trace.end_content == "abXd!"


CONCURRENT_HEAD = b'{"kind": "concurrent", "endContent": "", "numAgents": 1, "txns": '


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b"{}",
        gzip.compress(b"{}")[:-6],  # truncated gzip
        b"\x1f\x8b" + b"\x00" * 20,  # gzip magic, garbage after
        b'{"kind": "other", "endContent": ""}',
        CONCURRENT_HEAD + b'[{"parents": [3], "agent": 0, "patches": []}]}',
        CONCURRENT_HEAD + b'[{"parents": [], "agent": 5, "patches": []}]}',
        CONCURRENT_HEAD + b'[{"parents": [], "agent": true, "patches": []}]}',
        b'{"startContent": "", "endContent": "", "txns": [{"patches": [[-1, 0, "x"]]}]}',
        b'{"startContent": "", "endContent": "", "txns": [{"patches": [[0, 0]]}]}',
        b'{"startContent": "", "endContent": 3, "txns": []}',
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"broken\.json"):
        load_trace(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.json\.gz"):
        load_trace(tmp_path / "absent.json.gz")


def test_bundled_traces_are_packaged() -> None:
    for name in ("friendsforever", "clownschool"):
        path = bundled_trace_path(name)
        assert path.is_file()
        assert "crdtsync" in path.parts
    credits = bundled_trace_path("clownschool").with_name("CREDITS.md").read_text()
    assert "762fa6c51605c88a05ebe5c4b9d4540caca30b97" in credits
    assert "CC BY 4.0" in credits


def test_unknown_bundled_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="clownschool, friendsforever"):
        bundled_trace_path("nope")
