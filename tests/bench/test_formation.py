"""``crdtsync bench formation`` at tiny sizes: its structure, never its timings."""

from __future__ import annotations

from needs import require_found

from crdtsync.bench.formation import COMMAND
from crdtsync.bench.process_rooms import LAYOUTS, node_root
from crdtsync.bench.report import BenchOptions
from crdtsync.bench.suite import load


async def test_formation_times_every_contender_for_each_room_size() -> None:
    lines: list[str] = []
    result = await load("formation")(BenchOptions(runs=1, peers=(2, 3)), lines.append)
    assert result.params["peers"] == [2, 3]
    assert result.params["connections"] == [1, 3]
    assert result.params["process_layout"] == LAYOUTS
    for label, series in result.series.items():
        assert series.unit == ("CPU s" if " CPU " in label else "s")
        assert len(series.samples) == 1
        assert series.samples[0] > 0
    assert {"ratio_to_raw_aiortc_n2", "ratio_to_raw_aiortc_n3"} <= set(result.headline)
    in_process = {"crdtsync", "raw aiortc", "crdtsync, process per peer"}
    assert {f"{name} N={n}" for name in in_process for n in (2, 3)} <= set(result.series)
    require_found(lambda: node_root("bench formation", COMMAND))
    assert set(result.series) == {
        f"{name}{figure} N={n}"
        for name in (*in_process, "y-webrtc", "mixed")
        for figure in ("", " CPU")
        for n in (2, 3)
    }
    assert set(result.headline) == {
        f"{key}_n{n}"
        for key in ("ratio_to_raw_aiortc", "ratio_ywebrtc_to_crdtsync_processes")
        for n in (2, 3)
    }
    assert len(lines) == 2
