"""Real traces: bundled editing traces replayed at full speed by peers over real WebRTC.

Each trace (josephg/editing-traces, CC BY 4.0; see ``crdtsync/data/CREDITS.md``) becomes a
room of ``Peer``s in one process, linked over aiortc data channels on 127.0.0.1 by our
signaling server:

- a concurrent trace (friendsforever, clownschool): one peer per author, each typing its
  author's txns, as Yjs updates converted once by ``concurrent_updates``, ``BATCH`` per
  event-loop tick; an edit whose parents have not arrived yet waits for them, as in
  ``crdtsync demo`` (the author made it after seeing them);
- a sequential trace (sveltecomponent): its txns split into one consecutive chunk per peer,
  typed as a handoff: peer k starts once it holds the document exactly as chunk k-1 left
  it, then types at full speed while the others follow. The chunks are made ahead of time
  by one author document per chunk (client id k+1, starting from the previous author's
  document), so the clock measures sync, not pycrdt's cost of finding text positions.

The clock starts when the first edit is typed and stops when every replica is equal; each
replica's text is then checked against the trace's ``endContent`` (a mismatch raises). The
lower bound is the CRDT's own cost: the same updates applied, in order, to one ``Doc``.

Wire bytes are what the peers put on their links while the trace played (``bytes_sent``,
every message: updates, framing, sync and presence). Every edit must reach each of the
N-1 other peers, so the fair yardstick is one Yjs update per delivered copy:
``wire_bytes_ratio = wire bytes / (Yjs update bytes x (N-1))``. Below 1 means batching
(merged updates) saved more than the framing costs.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pycrdt

from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.bench.rooms import linked_peers
from crdtsync.errors import ConfigError, CrdtSyncError
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing.convergence import DocVersion, doc_version, wait_converged
from crdtsync.testing.traces import (
    TEXT_NAME,
    ConcurrentTrace,
    SequentialTrace,
    apply_patches,
    apply_when_ready,
    bundled_trace_path,
    concurrent_updates,
    load_trace,
)

__all__ = ["run"]

TIMEOUT = 120.0  # for linking, for each handoff, and for converging
BATCH = 20  # edits typed per event-loop tick: the demo's default, a fast typist's burst
SEQUENTIAL_PEERS = 4  # room size for a sequential trace when --peers is not given
TRACES = ("friendsforever", "clownschool", "sveltecomponent")


@dataclass(frozen=True, slots=True)
class Workload:
    """What each peer of a room types, and what the room must end with."""

    name: str
    typed: list[list[bytes]]  # per peer, its edits in order (empty: reads along)
    handoffs: list[DocVersion | None]  # per peer, the document it waits for before typing
    ordered: list[bytes]  # every edit in an order one Doc can apply them (the lower bound)
    end_content: str

    @property
    def peers(self) -> int:
        return len(self.typed)

    @property
    def update_bytes(self) -> int:
        return sum(len(update) for update in self.ordered)


def make_workload(name: str, peers: int | None = None, limit: int | None = None) -> Workload:
    """Trace ``name`` as a room's workload, its first ``limit`` txns only if given.

    A concurrent trace gets one peer per author, or ``peers`` if more (the rest read
    along); a sequential one is split over ``peers`` (default ``SEQUENTIAL_PEERS``).
    """
    trace = load_trace(bundled_trace_path(name))
    if isinstance(trace, ConcurrentTrace):
        if limit is not None:
            # Parents come before their txn, so a prefix is a trace of its own.
            trace = ConcurrentTrace("", trace.num_agents, trace.txns[:limit])
        return _concurrent(name, trace, peers or 0, full=limit is None)
    if limit is not None:
        trace = SequentialTrace(trace.start_content, "", trace.txns[:limit])
    return _sequential(name, trace, peers or SEQUENTIAL_PEERS, full=limit is None)


def _concurrent(name: str, trace: ConcurrentTrace, peers: int, full: bool) -> Workload:
    updates = concurrent_updates(trace)
    typed: list[list[bytes]] = [[] for _ in range(max(peers, trace.num_agents))]
    for item in updates:
        typed[item.agent].append(item.update)
    ordered = [item.update for item in updates]
    end = trace.end_content if full else _replayed(ordered)
    return Workload(name, typed, [None] * len(typed), ordered, end)


def _sequential(name: str, trace: SequentialTrace, peers: int, full: bool) -> Workload:
    """Chunk k is typed by its own author, starting from the document chunk k-1 left."""
    if trace.start_content:
        raise ConfigError(f"trace {name} starts with content; the benchmark replays from empty")
    size = -(-len(trace.txns) // peers)  # ceiling: the last chunk may be short
    typed: list[list[bytes]] = []
    handoffs: list[DocVersion | None] = []
    author: pycrdt.Doc[Any] = pycrdt.Doc()  # the author before the first: an empty document
    for index in range(peers):
        previous, author = author, pycrdt.Doc(client_id=index + 1)
        author.apply_update(previous.get_update())
        handoffs.append(doc_version(author) if index else None)
        made: list[bytes] = []
        author.observe(lambda event, made=made: made.append(event.update))
        text = author.get(TEXT_NAME, type=pycrdt.Text)
        for patches in trace.txns[index * size : (index + 1) * size]:
            with author.transaction():
                apply_patches(text, patches)
        typed.append(made)
    end = str(author.get(TEXT_NAME, type=pycrdt.Text))
    if full and end != trace.end_content:
        raise ConfigError(f"trace {name}: replaying its patches does not give its endContent")
    return Workload(name, typed, handoffs, [u for made in typed for u in made], end)


def _replayed(updates: Sequence[bytes]) -> str:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get(TEXT_NAME, type=pycrdt.Text)
    for update in updates:
        doc.apply_update(update)
    return str(text)


@dataclass(frozen=True, slots=True)
class Replay:
    """One replay over WebRTC: how long until every replica was equal, bytes on the links."""

    seconds: float
    wire_bytes: int


async def replay_once(workload: Workload) -> Replay:
    """Link a room over WebRTC, then time the workload until every replica is equal."""
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(workload.peers)]
    async with (
        SignalingServer() as server,
        linked_peers(server.url, docs, room="traces", timeout=TIMEOUT) as peers,
    ):
        before = sum(peer.bytes_sent for peer in peers)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _type(doc, updates, handoff)
                for doc, updates, handoff in zip(
                    docs, workload.typed, workload.handoffs, strict=True
                )
            )
        )
        await wait_converged(docs, timeout=TIMEOUT)
        seconds = time.perf_counter() - started
        wire_bytes = sum(peer.bytes_sent for peer in peers) - before
    for index, doc in enumerate(docs):
        _check_text(doc, workload, f"peer {index}")
    return Replay(seconds, wire_bytes)


def _check_text(doc: pycrdt.Doc[Any], workload: Workload, who: str) -> None:
    """Raise if ``doc``'s text is not the trace's end content: a benchmark of a wrong
    result is no benchmark."""
    text = str(doc.get(TEXT_NAME, type=pycrdt.Text))
    if text != workload.end_content:
        raise ChecksumError(
            f"{workload.name}: {who} ended at sha256 {_digest(text)} ({len(text)} chars), "
            f"the trace at {_digest(workload.end_content)} ({len(workload.end_content)} chars)"
        )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ChecksumError(CrdtSyncError):
    """A replica (or the lower bound) did not end at the trace's end content."""


async def _type(doc: pycrdt.Doc[Any], updates: list[bytes], handoff: DocVersion | None) -> None:
    """Type ``updates`` in order, ``BATCH`` per tick, once ``doc`` is at ``handoff``.

    An edit whose parents have not arrived waits for them: its author saw them first, and
    pycrdt cannot place content whose dependencies it lacks.
    """
    if not updates:
        return
    changed = asyncio.Event()
    subscription = doc.observe(lambda _event: changed.set())
    try:
        async with asyncio.timeout(TIMEOUT):
            while handoff is not None and doc_version(doc) != handoff:
                changed.clear()
                await changed.wait()
            for typed, update in enumerate(updates, 1):
                await apply_when_ready(doc, update, changed)
                if typed % BATCH == 0:
                    await asyncio.sleep(0)  # one event-loop tick: the mesh sends a batch
    finally:
        doc.unobserve(subscription)


def lower_bound_once(workload: Workload) -> float:
    """Seconds to apply every edit to one ``Doc``: the CRDT's cost, with no network."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    started = time.perf_counter()
    for update in workload.ordered:
        doc.apply_update(update)
    seconds = time.perf_counter() - started
    _check_text(doc, workload, "the lower bound")
    return seconds


async def run_traces(
    options: BenchOptions,
    progress: Progress,
    traces: Sequence[str] = TRACES,
    limit: int | None = None,
) -> BenchResult:
    """Replay ``traces`` (their first ``limit`` txns if given) ``options.runs`` times each."""
    sizes: Sequence[int | None] = options.peers or (None,)
    result = BenchResult("traces", {"traces": list(traces), "batch": BATCH})
    if limit is not None:
        result.params["txns_per_trace"] = limit
    rooms: dict[str, Workload] = {}
    for name in traces:
        for size in sizes:
            workload = make_workload(name, size, limit)
            # A concurrent trace has at least one peer per author: sizes may coincide.
            rooms.setdefault(f"{name} N={workload.peers}", workload)
    result.params["rooms"] = {
        label: {"edits": len(workload.ordered), "peers": workload.peers}
        for label, workload in rooms.items()
    }
    for label, workload in rooms.items():
        edits = len(workload.ordered)
        copies = workload.update_bytes * (workload.peers - 1)
        for run in range(1, options.runs + 1):
            replay = await replay_once(workload)
            bound = lower_bound_once(workload)
            result.add(f"crdtsync {label}", "s", replay.seconds)
            result.add(f"lower bound {label}", "s", bound)
            result.add(f"wire bytes/edit {label}", "B", replay.wire_bytes / edits)
            result.add(f"Yjs update bytes/edit {label}", "B", workload.update_bytes / edits)
            result.add(f"wire/update copies {label}", "x", replay.wire_bytes / copies)
            progress(
                f"{label} run {run}/{options.runs}: converged in {replay.seconds:.3f} s "
                f"(lower bound {bound:.4f} s), {replay.wire_bytes / edits:.1f} wire bytes/edit"
            )
        key = workload.name if len(sizes) == 1 else f"{workload.name}_n{workload.peers}"
        result.headline[f"wire_bytes_ratio_{key}"] = result.median(f"wire/update copies {label}")
        result.headline[f"ratio_to_lower_bound_{key}"] = result.median(
            f"crdtsync {label}"
        ) / result.median(f"lower bound {label}")
    return result


async def run(options: BenchOptions, progress: Progress) -> BenchResult:
    """Replay friendsforever, clownschool and sveltecomponent whole, ``options.runs`` times.

    ``--peers`` sets room sizes: a concurrent trace's extra peers read along, a sequential
    trace is split over them (default: one peer per author; 4 for sveltecomponent). The
    headline has ``wire_bytes_ratio_<trace>`` (wire bytes per delivered Yjs update byte)
    and ``ratio_to_lower_bound_<trace>`` (convergence time / one Doc applying every edit).
    """
    return await run_traces(options, progress)
