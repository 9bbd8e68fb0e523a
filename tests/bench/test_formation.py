"""``crdtsync bench formation`` at tiny sizes: its structure, never its timings."""

from __future__ import annotations

from crdtsync.bench.report import BenchOptions
from crdtsync.bench.suite import load


async def test_formation_times_both_contenders_for_each_room_size() -> None:
    lines: list[str] = []
    result = await load("formation")(BenchOptions(runs=1, peers=(2, 3)), lines.append)
    assert result.params == {"peers": [2, 3], "connections": [1, 3]}
    assert set(result.series) == {
        "crdtsync N=2",
        "raw aiortc N=2",
        "crdtsync N=3",
        "raw aiortc N=3",
    }
    for series in result.series.values():
        assert series.unit == "s"
        assert len(series.samples) == 1
        assert series.samples[0] > 0
    assert set(result.headline) == {"ratio_to_raw_aiortc_n2", "ratio_to_raw_aiortc_n3"}
    assert len(lines) == 2
