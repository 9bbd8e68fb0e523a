"""``crdtsync bench traces`` on short prefixes of the bundled traces (timings belong to benchmarks).

Named apart from ``tests/test_trace_replay.py``: test folders have no ``__init__.py``, so two
test modules may not share a name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pycrdt
import pytest

from crdtsync.bench.report import BenchOptions
from crdtsync.bench.trace_replay import (
    ChecksumError,
    make_workload,
    replay_once,
    run_traces,
)
from crdtsync.protocol.ymessages import read_state_vector
from crdtsync.testing.traces import TEXT_NAME

TRACES = ("friendsforever", "clownschool", "sveltecomponent")
LIMIT = 200  # txns per trace


async def test_every_trace_converges_with_all_its_series() -> None:
    lines: list[str] = []
    result = await run_traces(BenchOptions(runs=1), lines.append, TRACES, limit=LIMIT)
    rooms = {"friendsforever": 2, "clownschool": 3, "sveltecomponent": 4}
    assert len(lines) == len(rooms)
    for name, peers in rooms.items():
        label = f"{name} N={peers}"
        assert result.params["rooms"][label] == {"edits": LIMIT, "peers": peers}
        for series in ("crdtsync", "lower bound", "wire bytes/edit", "Yjs update bytes/edit"):
            assert len(result.series[f"{series} {label}"].samples) == 1
        assert result.median(f"wire bytes/edit {label}") > 0
        copies = result.median(f"Yjs update bytes/edit {label}") * LIMIT * (peers - 1)
        wire = result.median(f"wire bytes/edit {label}") * LIMIT
        assert result.median(f"wire/update copies {label}") == pytest.approx(wire / copies)
        assert result.headline[f"wire_bytes_ratio_{name}"] > 0
        assert result.headline[f"ratio_to_lower_bound_{name}"] > 0


def test_a_concurrent_trace_is_typed_by_its_authors_and_extra_peers_read_along() -> None:
    workload = make_workload("clownschool", peers=4, limit=LIMIT)
    assert workload.peers == 4
    assert workload.typed[3] == []
    assert sum(len(updates) for updates in workload.typed) == LIMIT
    assert workload.handoffs == [None] * 4


def test_a_sequential_trace_is_handed_off_in_consecutive_chunks() -> None:
    workload = make_workload("sveltecomponent", peers=4, limit=LIMIT)
    assert [len(updates) for updates in workload.typed] == [50, 50, 50, 50]
    assert workload.handoffs[0] is None
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get(TEXT_NAME, type=pycrdt.Text)
    clients = []
    for index, updates in enumerate(workload.typed):
        before = set(_clients(doc))
        for update in updates:
            doc.apply_update(update)
        clients.append(set(_clients(doc)) - before)
        if index + 1 < workload.peers:  # the next author starts from exactly this document
            handoff = workload.handoffs[index + 1]
            assert handoff is not None
            assert dict(handoff[0]) == _clients(doc)
    assert clients == [{1}, {2}, {3}, {4}]  # each chunk by an author of its own
    assert str(text) == workload.end_content


async def test_a_replica_that_ends_elsewhere_fails_loudly() -> None:
    workload = make_workload("friendsforever", limit=50)
    wrong = dataclasses.replace(workload, end_content=workload.end_content + "!")
    with pytest.raises(ChecksumError, match="peer 0 ended at sha256"):
        await replay_once(wrong)


def _clients(doc: pycrdt.Doc[Any]) -> dict[int, int]:
    return read_state_vector(doc.get_state())
