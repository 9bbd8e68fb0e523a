"""``crdtsync bench scale`` at a small size: its structure and its exact counts, never timings."""

from __future__ import annotations

from crdtsync.bench.report import BenchOptions
from crdtsync.bench.suite import load

PEERS = 12  # max_conns=8 makes a partial mesh of it, max_conns=20 a full one
EDITS = 20
LABELS = {
    "links",
    "max degree",
    "memory per peer",
    "memory per link",
    "messages per edit",
    "bytes per edit",
    "form time",
    "messages to form",
}


async def test_scale_counts_links_memory_and_messages_per_edit() -> None:
    lines: list[str] = []
    result = await load("scale")(BenchOptions(runs=1, peers=(PEERS,), edits=EDITS), lines.append)
    assert result.params["peers"] == [PEERS]
    assert result.params["max_conns"] == [8, 20]
    assert result.params["edits"] == EDITS
    rooms = [f"N={PEERS} c=8", f"N={PEERS} c=20"]
    assert set(result.series) == {f"memory per lone peer N={PEERS}"} | {
        f"{label} {room}" for label in LABELS for room in rooms
    }
    assert all(len(series.samples) == 1 for series in result.series.values())
    assert len(lines) == len(rooms)

    def figure(label: str, room: str) -> float:
        return result.median(f"{label} {room}")

    partial, full = rooms
    # A full mesh: every pair linked, each edit crosses each link once and goes no further.
    assert figure("links", full) == PEERS * (PEERS - 1) / 2
    assert figure("max degree", full) == PEERS - 1
    assert figure("messages per edit", full) == PEERS - 1
    assert result.headline["messages_vs_flood"] == 1.0
    assert result.headline["messages_vs_relay"] == (PEERS - 1) / PEERS
    # A partial mesh: every peer dials 8, accepts more; each edit still reaches all others.
    assert PEERS * 8 / 2 <= figure("links", partial) < PEERS * (PEERS - 1) / 2
    assert 8 <= figure("max degree", partial) <= PEERS - 1
    assert figure("messages per edit", partial) >= PEERS - 1
    for room in rooms:
        assert figure("bytes per edit", room) > figure("messages per edit", room)
        assert figure("messages to form", room) >= 2 * figure("links", room)  # HELLOs at least
        assert figure("memory per link", room) > 0
        assert figure("memory per peer", room) > result.median(f"memory per lone peer N={PEERS}")
    assert result.headline["messages_per_edit"] == figure("messages per edit", full)
    assert result.headline["memory_per_peer_kib"] == figure("memory per peer", full)
    assert result.headline["memory_per_link_kib"] == figure("memory per link", full)
    assert result.headline["messages_per_edit_n12_c8"] == figure("messages per edit", partial)
