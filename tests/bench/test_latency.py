"""``crdtsync bench latency`` at a tiny size: its structure, never its timings.

The benchmark itself raises unless every receiver saw every edit once and the documents
all hold every edit, so a run that returns has delivered them all.
"""

from __future__ import annotations

from crdtsync.bench.latency import EDITS
from crdtsync.bench.report import BenchOptions
from crdtsync.bench.suite import load


async def test_latency_gives_percentiles_for_us_and_the_floor() -> None:
    lines: list[str] = []
    result = await load("latency")(BenchOptions(runs=1, peers=(3,)), lines.append)
    assert result.params["peers"] == [3]
    assert result.params["edits"] == EDITS
    assert set(result.series) == {
        f"{name} {percentile} N=3"
        for name in ("crdtsync", "raw aiortc")
        for percentile in ("p50", "p99")
    }
    for series in result.series.values():
        assert series.unit == "ms"
        assert len(series.samples) == 1
    for name in ("crdtsync", "raw aiortc"):
        assert 0 < result.median(f"{name} p50 N=3") <= result.median(f"{name} p99 N=3")
    assert set(result.headline) == {
        "p50_ms_n3",
        "p99_ms_n3",
        "ratio_to_raw_aiortc_p50_n3",
        "ratio_to_raw_aiortc_p99_n3",
    }
    assert len(lines) == 1
