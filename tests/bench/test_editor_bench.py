"""``crdtsync bench editor``: its structure, never its timings.

A run returns only once the receiver's editor held every keystroke, so a run that returns
has delivered them all.
"""

from __future__ import annotations

from crdtsync.bench.editor import KEYSTROKES, separate_cores
from crdtsync.bench.report import BenchOptions
from crdtsync.bench.suite import load

CONTENDERS = ("bare peers", "editors", "editors no-wrap")
ON_CORES = ("bare peers, a core each", "editors, a core each")  # with two CPUs or more


async def test_editor_latency_gives_percentiles_for_editors_and_bare_peers() -> None:
    lines: list[str] = []
    result = await load("editor")(BenchOptions(runs=1), lines.append)
    assert result.params["keystrokes"] == KEYSTROKES
    names = CONTENDERS + (ON_CORES if separate_cores() is not None else ())
    assert set(result.series) == {
        f"{name} {percentile}" for name in names for percentile in ("p50", "p99")
    }
    for name in names:
        assert 0 < result.median(f"{name} p50") <= result.median(f"{name} p99")
    assert set(result.headline) == {
        f"{prefix}{percentile}_ms"
        for prefix in ("", "added_", "shared_added_")
        for percentile in ("p50", "p99")
    }
    # The headline's editors are those on a CPU each, where there are two CPUs.
    headline_editors = "editors, a core each" if result.params["cores"] else "editors"
    assert result.headline["p99_ms"] == result.median(f"{headline_editors} p99")
    assert len(lines) == 1
