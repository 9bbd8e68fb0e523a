"""The benchmarks ``crdtsync bench`` knows, by name, in the order a full run takes them.

Each lives in its own module of this package and exposes ``run(options, progress)``; they
are imported only when run, so the command starts fast and their extras stay optional.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

from crdtsync.bench.report import BenchOptions, BenchResult, Progress

__all__ = ["BENCHMARKS", "Benchmark", "load"]

Benchmark = Callable[[BenchOptions, Progress], Awaitable[BenchResult]]

# name on the command line -> module in crdtsync.bench
BENCHMARKS = {
    "convergence": "convergence",
    "traces": "trace_replay",
    "formation": "formation",
    "latency": "latency",
    "initial-sync": "initial_sync",
    "scale": "scale",
    # Many documents over one link per remote peer: a newcomer opening 1,000, memory per
    # open document, one link against one per document.
    "workspace": "workspace",
    "interop": "interop",  # Node peers: needs npm ci and a loopback-only network namespace
    "signaling": "signaling",  # y-webrtc's server.js beside ours: needs npm ci
    # Lossy networks and blackouts, in a namespace of their own (needs root and nft), then
    # direct against relayed (TURN) links (needs coturn).
    "network": "network",
    "editor": "editor",  # examples/editor.py under Pilot: needs Textual and a source tree
}


def load(name: str) -> Benchmark:
    """The ``run`` function of benchmark ``name`` (one of ``BENCHMARKS``)."""
    module = importlib.import_module(f"crdtsync.bench.{BENCHMARKS[name]}")
    run: Benchmark = module.run
    return run
