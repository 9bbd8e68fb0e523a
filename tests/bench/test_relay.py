"""The direct-against-relayed half of ``crdtsync bench network`` at a tiny size: its
structure, never its timings. A run that returns delivered every edit on both paths, and
every link of the relayed room went through coturn (the benchmark raises otherwise)."""

from __future__ import annotations

from needs import require_found

from crdtsync.bench.relay import PATHS, measure
from crdtsync.bench.report import BenchOptions, BenchResult
from crdtsync.testing.coturn import turnserver_binary


async def test_direct_and_relayed_side_by_side() -> None:
    require_found(turnserver_binary)
    lines: list[str] = []
    result = BenchResult("network", {})
    await measure(result, BenchOptions(runs=1, peers=(2,), edits=50), lines.append)
    assert set(result.series) == {
        f"{path} {figure} N=2" for path in PATHS for figure in ("p50", "p99", "convergence")
    }
    for path in PATHS:
        assert 0 < result.median(f"{path} p50 N=2") <= result.median(f"{path} p99 N=2")
        assert result.series[f"{path} convergence N=2"].unit == "s"
    assert set(result.headline) == {
        f"relayed_over_direct_{figure}_n2" for figure in ("p50", "p99", "convergence")
    }
    assert result.params["relay_peers"] == [2]
    assert len(lines) == 1
