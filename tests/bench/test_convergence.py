"""``crdtsync bench convergence`` end to end at tiny sizes (timings belong to benchmarks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pycrdt
from needs import require_found

from crdtsync.bench.convergence import COMMAND, make_edits
from crdtsync.bench.process_rooms import node_root

CONTENDERS = ("crdtsync", "crdtsync, process per peer", "y-webrtc", "mixed", "relay")
TRAFFIC = ("messages/edit", "bytes/edit", "CPU/message", "CPU/edit")


def test_convergence_benchmark_writes_its_headline_keys_and_chart(tmp_path: Path) -> None:
    require_found(lambda: node_root("bench convergence", COMMAND))
    path = tmp_path / "convergence.json"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "crdtsync.cli", "bench", "convergence"),
            *("--peers", "2", "--edits", "20", "--runs", "1", "--json", str(path), "--plot"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(path.read_text())
    assert summary["peers"] == [2]
    assert summary["headline_peers"] == 2
    assert summary["edits_per_peer"] == 20
    assert summary["speedup_vs_relay"] > 0
    assert summary["ratio_to_lower_bound"] > 0
    assert summary["speedup_vs_ywebrtc"] > 0
    assert summary["speedup_vs_ywebrtc_one_process"] > 0
    assert summary["speedup_mixed_vs_ywebrtc"] > 0
    assert "skipped" not in summary
    assert set(summary["process_layout"]) == set(CONTENDERS)
    assert set(summary["series"]) == {
        "lower bound N=2",
        *(f"{name} N=2" for name in CONTENDERS),
        *(f"{name} {figure} N=2" for name in CONTENDERS for figure in TRAFFIC),
    }
    # Every contender but the bound sent something for the edits; y-webrtc sends each update
    # to the other peer, and echoes each one it receives: 2 messages per edit.
    assert all(summary["series"][f"{name} messages/edit N=2"]["median"] > 0 for name in CONTENDERS)
    assert summary["series"]["y-webrtc messages/edit N=2"]["median"] == 2
    assert all(len(series["samples"]) == 1 for series in summary["series"].values())
    assert "speedup_vs_relay" in result.stdout
    assert path.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_without_node_the_ywebrtc_contenders_are_skipped_with_a_reason(tmp_path: Path) -> None:
    # A subprocess, as a user runs it (the relay leaves anyio streams for the collector),
    # with a PATH on which there is no node.
    path = tmp_path / "convergence.json"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "crdtsync.cli", "bench", "convergence"),
            *("--peers", "2", "--edits", "5", "--runs", "1", "--json", str(path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(path.read_text())
    reason = summary["skipped"]
    # No node, or not a loopback-only namespace:
    assert reason.startswith("bench convergence (its y-webrtc and mixed contenders) ")
    assert f"skipped: {reason}" in result.stdout
    assert {"crdtsync N=2", "crdtsync, process per peer N=2", "relay N=2"} <= set(summary["series"])
    assert not [label for label in summary["series"] if label.startswith(("y-webrtc", "mixed"))]
    assert "speedup_vs_ywebrtc" not in summary
    assert summary["speedup_vs_relay"] > 0


def test_edits_are_concurrent_one_character_updates() -> None:
    edits = make_edits(peers=3, edits=5)
    assert [len(updates) for updates in edits] == [5, 5, 5]
    doc: pycrdt.Doc = pycrdt.Doc()
    for updates in edits:
        for update in updates:
            doc.apply_update(update)
    text = str(doc.get("text", type=pycrdt.Text))
    assert sorted(text) == sorted("aaaaabbbbbccccc")
    # Made apart, each peer's run stays whole: none saw another's edits.
    assert {text[i : i + 5] for i in range(0, 15, 5)} == {"aaaaa", "bbbbb", "ccccc"}


def test_bench_refuses_a_json_path_for_several_benchmarks(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crdtsync.cli", "bench", "--json", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "--json names one file" in result.stderr
