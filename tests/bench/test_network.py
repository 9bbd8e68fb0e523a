"""``crdtsync bench network`` at a tiny size: its structure, never its timings. Needs root
and nft (skips without, fails under ``CI=true``)."""

from __future__ import annotations

from needs import require_found

from crdtsync import netfault
from crdtsync.bench import network
from crdtsync.bench.report import BenchOptions
from crdtsync.bench.suite import load
from crdtsync.testing.coturn import turnserver_binary


async def test_network_measures_each_loss_and_a_blackout() -> None:
    require_found(netfault.check)
    require_found(turnserver_binary)
    assert load("network") is network.run
    lines: list[str] = []
    # 7 s: past the 5 s dead-peer timeout, so the links do drop
    options = BenchOptions(runs=1, edits=5, peers=(2,))
    result = await network.run(options, lines.append, outages=(7.0,))
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
        *(f"relayed_over_direct_{figure}_n2" for figure in ("p50", "p99", "convergence")),
    }
    assert result.median("relayed p50 N=2") > 0  # the relayed half, in the same run
    assert len(lines) == 5
