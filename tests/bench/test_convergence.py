"""``crdtsync bench convergence`` end to end at tiny sizes (timings belong to benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pycrdt

from crdtsync.bench.convergence import make_edits


def test_convergence_benchmark_writes_its_headline_keys_and_chart(tmp_path: Path) -> None:
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
    assert set(summary["series"]) == {"crdtsync N=2", "relay N=2", "lower bound N=2"}
    assert all(len(series["samples"]) == 1 for series in summary["series"].values())
    assert "speedup_vs_relay" in result.stdout
    assert path.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


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
