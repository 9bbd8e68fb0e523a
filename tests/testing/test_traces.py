"""Trace loading and conversion: every replay must reproduce the trace's end content."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from crdtsync.errors import ConfigError
from crdtsync.testing import doc_version
from crdtsync.testing.traces import (
    TEXT_NAME,
    AgentUpdate,
    ConcurrentTrace,
    SequentialTrace,
    apply_patches,
    bundled_trace_path,
    client_id_for_agent,
    concurrent_updates,
    load_trace,
)


@pytest.fixture(scope="module", params=["friendsforever", "clownschool"])
def converted(request: pytest.FixtureRequest) -> tuple[ConcurrentTrace, list[AgentUpdate]]:
    trace = load_trace(bundled_trace_path(request.param))
    assert isinstance(trace, ConcurrentTrace)
    return trace, concurrent_updates(trace)


def text_after(updates: list[bytes]) -> pycrdt.Doc[Any]:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    for update in updates:
        doc.apply_update(update)
    return doc


def test_bundled_traces_convert_to_their_end_content(
    converted: tuple[ConcurrentTrace, list[AgentUpdate]],
) -> None:
    trace, updates = converted
    assert len(updates) == len(trace.txns)
    doc = text_after([item.update for item in updates])
    assert str(doc.get(TEXT_NAME, type=pycrdt.Text)) == trace.end_content


def test_each_update_carries_only_its_authors_client_id(
    converted: tuple[ConcurrentTrace, list[AgentUpdate]],
) -> None:
    _, updates = converted
    for item in updates[:: max(1, len(updates) // 500)]:
        clients = {client for client, _ in doc_version(text_after([item.update]))[0]}
        assert clients <= {client_id_for_agent(item.agent)}, item.agent


def test_any_interleaving_of_the_authors_converges(
    converted: tuple[ConcurrentTrace, list[AgentUpdate]],
) -> None:
    trace, updates = converted
    by_agent = [[u.update for u in updates if u.agent == a] for a in range(trace.num_agents)]
    one_author_after_another = [
        update for updates_of in reversed(by_agent) for update in updates_of
    ]
    doc = text_after(one_author_after_another)
    assert str(doc.get(TEXT_NAME, type=pycrdt.Text)) == trace.end_content


def test_a_fork_and_a_merge(tmp_path: Path) -> None:
    trace = {
        "kind": "concurrent",
        "endContent": "Hello, dear world!",
        "numAgents": 2,
        "txns": [
            {"parents": [], "agent": 0, "patches": [[0, 0, "Hello world"]]},
            {"parents": [0], "agent": 0, "patches": [[5, 0, ","]]},  # concurrent with 2
            {"parents": [0], "agent": 1, "patches": [[11, 0, "!"]]},
            {"parents": [1, 2], "agent": 1, "patches": [[7, 0, "dear "]]},  # merge
        ],
    }
    path = tmp_path / "fork.json"
    path.write_text(json.dumps(trace))
    loaded = load_trace(path)
    assert isinstance(loaded, ConcurrentTrace)
    doc = text_after([item.update for item in concurrent_updates(loaded)])
    assert str(doc.get(TEXT_NAME, type=pycrdt.Text)) == "Hello, dear world!"


def test_sequential_trace(tmp_path: Path) -> None:
    trace = {
        "startContent": "",
        "endContent": "abXd",
        "txns": [
            {"time": "t", "patches": [[0, 0, "abcd"]]},
            {"time": "t", "patches": [[2, 1, "X"]]},
        ],
    }
    path = tmp_path / "seq.json.gz"
    path.write_bytes(gzip.compress(json.dumps(trace).encode()))
    loaded = load_trace(path)
    assert isinstance(loaded, SequentialTrace)
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get(TEXT_NAME, type=pycrdt.Text)
    for patches in loaded.txns:
        apply_patches(text, patches)
    assert str(text) == loaded.end_content


CONCURRENT_HEAD = b'{"kind": "concurrent", "endContent": "", "numAgents": 1, "txns": '


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"{}",
        CONCURRENT_HEAD + b'[{"parents": [3], "agent": 0, "patches": []}]}',
        CONCURRENT_HEAD + b'[{"parents": [], "agent": 5, "patches": []}]}',
        b'{"startContent": "", "endContent": "", "txns": [{"patches": [[-1, 0, "x"]]}]}',
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"broken\.json"):
        load_trace(path)


def test_unknown_bundled_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="friendsforever"):
        bundled_trace_path("nope")
