"""``crdtsync bench latency`` at a tiny size: its structure, never its timings.

The benchmark itself raises unless every receiver saw every edit once and the documents
all hold every edit, so a run that returns has delivered them all.
"""

from __future__ import annotations

from needs import require_found

from crdtsync.bench.latency import COMMAND, EDITS
from crdtsync.bench.process_rooms import node_root
from crdtsync.bench.report import BenchOptions
from crdtsync.bench.suite import load


async def test_latency_gives_percentiles_for_every_contender() -> None:
    lines: list[str] = []
    result = await load("latency")(BenchOptions(runs=1, peers=(3,)), lines.append)
    assert result.params["peers"] == [3]
    assert result.params["edits"] == EDITS
    for series in result.series.values():
        assert series.unit == "ms"
        assert len(series.samples) == 1
    names = {label.rsplit(" ", 2)[0] for label in result.series}
    for name in names:
        assert 0 < result.median(f"{name} p50 N=3") <= result.median(f"{name} p99 N=3")
    assert {"crdtsync", "raw aiortc", "crdtsync, process per peer"} <= names
    assert {
        "p50_ms_n3",
        "p99_ms_n3",
        "ratio_to_raw_aiortc_p50_n3",
        "ratio_to_raw_aiortc_p99_n3",
    } <= set(result.headline)
    require_found(lambda: node_root("bench latency", COMMAND))
    assert names == {"crdtsync", "raw aiortc", "crdtsync, process per peer", "y-webrtc", "mixed"}
    assert {
        "ratio_ywebrtc_to_crdtsync_processes_p50_n3",
        "ratio_ywebrtc_to_crdtsync_processes_p99_n3",
    } <= set(result.headline)
    assert len(lines) == 1
