"""``crdtsync bench convergence`` runs end to end (tiny sizes: timings belong to benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_convergence_benchmark_writes_its_headline_keys(tmp_path: Path) -> None:
    path = tmp_path / "convergence.json"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "crdtsync.cli", "bench", "convergence"),
            *("--peers", "2", "--edits", "20", "--runs", "1", "--json", str(path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(path.read_text())
    assert summary["peers"] == 2
    assert summary["edits_per_peer"] == 20
    assert summary["speedup_vs_relay"] > 0
    assert summary["ratio_to_lower_bound"] > 0
    assert set(summary["seconds"]) == {"crdtsync", "relay", "lower_bound"}
    assert "speedup vs relay" in result.stdout
