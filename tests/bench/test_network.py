"""``crdtsync bench network`` at a tiny size: its structure, never its timings. Needs root
and nft (skips without, fails under ``CI=true``)."""

from __future__ import annotations

from needs import require_found

from crdtsync import netfault
from crdtsync.bench import network
from crdtsync.bench.report import BenchOptions
from crdtsync.bench.suite import load


async def test_network_measures_each_loss_and_a_blackout() -> None:
    require_found(netfault.check)
    assert load("network") is network.run
    lines: list[str] = []
    # 7 s: past the 5 s dead-peer timeout, so the links do drop
    result = await network.run(BenchOptions(runs=1, edits=5), lines.append, outages=(7.0,))
    assert result.params["losses"] == [0, 10, 30]
    for loss in (0, 10, 30):
        assert result.series[f"converge loss={loss}%"].unit == "s"
        assert result.series[f"wire loss={loss}%"].samples[0] > 0
        assert result.series[f"payload loss={loss}%"].samples[0] > 0
    assert len(result.series["blackout: links back after heal"].samples) == 1
    assert set(result.headline) == {
        "converge_ratio_30_to_0",
        "wire_ratio_30_to_0",
        "relink_after_heal_s",
    }
    assert len(lines) == 4
