"""Direct against relayed: the same room over host candidates, and through a coturn relay.

Half of ``crdtsync bench network`` (the loss half is ``network.py``'s). In each run, the
same N peers (3 by default) form a room twice on 127.0.0.1: directly (host candidates), and
relay-only (``ice_transport_policy="relay"``) through a coturn server started for the run,
with credentials our signaling server hands out (``use-auth-secret``). Each room is
measured as ``latency.py`` measures edit latency (``EDITS`` paced one-character inserts,
p50 and p99 of every receiver's delay) and as ``convergence.py`` measures convergence
(each peer types ``--edits`` concurrent edits; time until every replica is equal), so the
two paths are side by side in one run. Every relayed link is checked to be relayed.

On loopback the relay's cost is coturn's own work (two more UDP hops through one more
process per message, and its channel framing), not distance.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pycrdt

from crdtsync.bench.convergence import make_edits, time_typing
from crdtsync.bench.latency import EDITS, percentiles_ms, typing_delays
from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.bench.rooms import linked_peers
from crdtsync.bench.wire import counting_sends
from crdtsync.errors import TransportError
from crdtsync.peer import Peer
from crdtsync.signaling.server import SignalingServer
from crdtsync.signaling.turn import TurnSettings
from crdtsync.testing.coturn import Coturn

__all__ = ["PATHS", "measure"]

PATHS = ("direct", "relayed")
SEED = 20240601  # the draw of who edits, as latency.py's
TIMEOUT = 120.0  # for linking, for one edit to reach everyone, and for converging
SECRET = "crdtsync-bench-relay"  # coturn's static-auth-secret, this run's only


@asynccontextmanager
async def _room(path: str, docs: Sequence[pycrdt.Doc[Any]]) -> AsyncIterator[list[Peer]]:
    """Linked peers, one per doc: direct, or relay-only through a fresh coturn."""
    if path == "direct":
        async with (
            SignalingServer() as server,
            linked_peers(server.url, docs, room="direct", timeout=TIMEOUT) as peers,
        ):
            yield peers
        return
    async with (
        Coturn.start(secret=SECRET) as turn,
        SignalingServer(turn=TurnSettings([turn.url], SECRET)) as server,
        linked_peers(
            server.url,
            docs,
            room="relayed",
            timeout=TIMEOUT,
            peer_options={"ice_transport_policy": "relay"},
        ) as peers,
    ):
        for peer in peers:
            for remote, stats in peer.link_stats().items():
                if stats.path is None or not stats.path.relayed:
                    raise TransportError(f"{peer.id} -> {remote} is not relayed: {stats.path}")
        yield peers


async def latency_once(path: str, nodes: int, editors: list[int]) -> list[float]:
    """Per-receiver delays of one-character inserts among ``nodes`` peers on ``path``."""
    return await typing_delays(lambda docs: _room(path, docs), nodes, editors)


async def convergence_once(path: str, edits: list[list[bytes]]) -> float:
    """Seconds until every peer on ``path`` holds every peer's concurrent edits."""
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in edits]
    with counting_sends() as wire:
        async with _room(path, docs):
            return (await time_typing(docs, edits, wire)).seconds


async def measure(result: BenchResult, options: BenchOptions, progress: Progress) -> None:
    """Add this half's series and headline to ``result`` (``bench network`` joins both).

    Series per room size N and path: ``{path} p50 N=..``/``p99`` (ms) and ``{path}
    convergence N=..`` (s). Headline: ``relayed_over_direct_{p50,p99,convergence}_nN``."""
    sizes = options.peers_or(3)
    result.params.update(relay_peers=list(sizes), relay_edits=EDITS, relay_seed=SEED)
    result.params["relay_edits_per_peer"] = options.edits
    for nodes in sizes:
        draw = random.Random(SEED)
        editors = [draw.randrange(nodes) for _ in range(EDITS)]
        edits = make_edits(nodes, options.edits)
        for run in range(1, options.runs + 1):
            line = []
            for path in PATHS:
                p50, p99 = percentiles_ms(await latency_once(path, nodes, editors))
                seconds = await convergence_once(path, edits)
                result.add(f"{path} p50 N={nodes}", "ms", p50)
                result.add(f"{path} p99 N={nodes}", "ms", p99)
                result.add(f"{path} convergence N={nodes}", "s", seconds)
                line.append(f"{path} p50 {p50:.2f} ms, p99 {p99:.2f} ms, converged {seconds:.3f} s")
            progress(f"N={nodes} run {run}/{options.runs}: " + "; ".join(line))
        for figure in ("p50", "p99", "convergence"):
            relayed = result.median(f"relayed {figure} N={nodes}")
            direct = result.median(f"direct {figure} N={nodes}")
            result.headline[f"relayed_over_direct_{figure}_n{nodes}"] = relayed / direct
