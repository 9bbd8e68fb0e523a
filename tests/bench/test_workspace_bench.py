"""``crdtsync bench workspace`` on a small workspace: its structure and its exact counts,
never its timings."""

from __future__ import annotations

from crdtsync.bench.report import BenchOptions
from crdtsync.bench.workspace import run

DOCUMENTS = 30
PAIR_DOCUMENTS = 4


async def test_workspace_times_the_newcomer_weighs_documents_and_counts_links() -> None:
    lines: list[str] = []
    result = await run(
        BenchOptions(runs=1), lines.append, documents=DOCUMENTS, pair_documents=PAIR_DOCUMENTS
    )

    assert result.benchmark == "workspace"
    assert result.params["documents"] == DOCUMENTS
    assert result.params["pair_documents"] == PAIR_DOCUMENTS
    assert result.params["pair_signaling_connections"] == {
        "workspace": 2,
        "single": 2 * PAIR_DOCUMENTS,
    }
    assert result.params["update_bytes"] > result.params["chars"]
    assert set(result.series) == {
        f"newcomer opens D={DOCUMENTS}",
        f"newcomer joins and opens D={DOCUMENTS}",
        f"local apply D={DOCUMENTS}",
        f"newcomer received D={DOCUMENTS}",
        f"newcomer messages D={DOCUMENTS}",
        f"sync calls D={DOCUMENTS}",
        f"transport carries D={DOCUMENTS}",
        f"memory per open document D={DOCUMENTS}",
        f"workspace pair formation D={PAIR_DOCUMENTS}",
        f"workspace pair links D={PAIR_DOCUMENTS}",
        f"single pair formation D={PAIR_DOCUMENTS}",
        f"single pair links D={PAIR_DOCUMENTS}",
    }
    assert all(len(series.samples) == 1 for series in result.series.values())
    # One link per remote peer, whatever the documents; one per document without workspaces.
    assert result.headline["pair_links_workspace"] == 1
    assert result.headline["pair_links_single"] == PAIR_DOCUMENTS
    # The newcomer got every document's whole state, from one holder or both.
    assert result.median(f"newcomer received D={DOCUMENTS}") > result.params["update_bytes"]
    assert result.median(f"newcomer messages D={DOCUMENTS}") > 0
    assert result.headline["memory_per_document_kib"] > 0
    # The floors are parts of the newcomer's own work: it cannot beat their sum.
    assert result.headline["newcomer_vs_floor"] > 1
    assert next(iter(result.headline)) == "newcomer_vs_local"
    assert all(value > 0 for value in result.headline.values())
    assert len(lines) == 2 + 3  # the build (before and after), one line per run of each part
