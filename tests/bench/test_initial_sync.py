"""``initial-sync`` runs end to end on a prefix of its trace (timings belong to benchmarks)."""

from __future__ import annotations

from crdtsync.bench.initial_sync import run
from crdtsync.bench.report import BenchOptions
from crdtsync.protocol.frames import DEFAULT_MAX_MESSAGE_SIZE

# Enough of automerge-paper for a full-state update above one transport message (~70 kB),
# so both contenders chunk, while the replay stays around a second.
TXNS = 60_000


async def test_initial_sync_joins_every_room_size_and_reports_its_ratios() -> None:
    lines: list[str] = []
    result = await run(BenchOptions(runs=1, peers=(2, 3)), lines.append, txns=TXNS)

    assert result.benchmark == "initial-sync"
    assert result.params["txns"] == TXNS
    assert result.params["peers"] == [2, 3]
    assert result.params["update_bytes"] > DEFAULT_MAX_MESSAGE_SIZE
    assert result.params["baseline_messages"] == 2
    assert set(result.series) == {
        f"{name} N={peers}"
        for peers in (2, 3)
        for name in (
            "crdtsync join",
            "crdtsync from link",
            "baseline join",
            "baseline transfer+apply",
            "newcomer received",
        )
    }
    assert all(len(series.samples) == 1 for series in result.series.values())
    # The newcomer got at least the whole state, from each holder's step 2 or one of them.
    for peers in (2, 3):
        assert result.median(f"newcomer received N={peers}") > result.params["update_bytes"]
    assert list(result.headline)[:2] == ["ratio_to_transfer_apply", "join_ratio"]
    assert {"ratio_to_transfer_apply_n3", "join_ratio_n3"} <= set(result.headline)
    assert all(value > 0 for value in result.headline.values())
    assert result.params["headline_peers"] == 2
    assert len(lines) == 2 + 2  # the build (before and after), then one line per run
