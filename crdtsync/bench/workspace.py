"""Workspace: one peer, many documents over one link per remote peer (issue 12).

The documents are files cut from the bundled traces' end texts and typed in with a real
edit stream's rhythm (``trace_files.py``): 1,000 by default, ~166 characters on average
(median 68, the largest 3,620), built once per run of the command, outside every clock.
Three questions, each measured side by side in every run:

- **newcomer**: two workspace peers hold every document, linked with each other and synced,
  over real aiortc data channels on 127.0.0.1 through our signaling server; a third peer
  joins, and once it is linked with both, opens every document at once (``asyncio.gather``
  of ``open``, each of which returns once synced with both holders). The clock runs from
  the first ``open`` until the last returns (and, beside it, from ``start()``: signaling
  and WebRTC set-up included); every document is then checked (state vector and delete
  set) against the holders'. Against it: the floor of any transfer, in the same process,
  each holder document's ``get_update()`` applied to a fresh ``Doc``, 1,000 times (the
  mean of ``LOCAL_REPEATS``). ``newcomer_vs_local`` is the ratio of medians (target: 3).
  Beside it, the bytes the newcomer received and the data-channel messages on its links
  (each costs ~0.3-0.4 ms of aiortc's CPU, whatever it carries: the count explains time),
  and the floors of ``floors.py``, timed in the same run: the sync protocol's own pycrdt
  calls, and the transport carrying the bytes the newcomer received. ``floor_vs_local``
  is their sum over the in-process floor: what no code of ours can take back.
- **memory per open document** beyond pycrdt's own: on the simulated network (virtual
  clock, seeded), two workspace peers linked, one holding N documents (adopted), the other
  opening them all and syncing, weighed with ``tracemalloc``; less the heap of the same two
  linked peers with no document, less the heap of 2N bare ``Doc``s holding the same
  content; divided by 2N. Counted: every Python object an open document adds to a peer
  (replica, sync session per link, ids, outboxes, subscriptions). Not counted: pycrdt's
  Rust heap (the documents' content and history, the same with or without crdtsync),
  allocator overhead, and what the simulated transport allocates (standing in for
  aiortc's connection objects, which a document does not add: it shares the link).
- **one link against one per document**: two peers sharing ``PAIR_DOCUMENTS`` documents
  (100), as one workspace peer on each side against a single-document ``Peer`` per
  document and side (one room per document, as before workspaces). One side holds the
  documents, the other starts empty; the clock runs from ``start()`` until the empty side
  holds every document, synced. Counted: the links between the two sides (each one
  ``RTCPeerConnection`` per end) and the signaling connections (one per ``Peer``). Those
  200 connections from one address are past what our signaling server admits by default
  (``max_connections_per_address``, 64), so this benchmark's server admits more.

There is no ``--network sim`` here: the other benchmarks over WebRTC have none either.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pycrdt

from crdtsync.bench.floors import sync_calls, transport_carries
from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.bench.rooms import LOOPBACK
from crdtsync.bench.simulated import KIB, in_virtual_time, traced
from crdtsync.bench.trace_files import RHYTHM_TRACE, TRACES, TraceFile, build_files
from crdtsync.errors import SyncTimeoutError
from crdtsync.peer import Peer
from crdtsync.signaling.limits import SignalingSettings
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing.convergence import converged
from crdtsync.transport.memory import SimNetwork

__all__ = ["run"]

DOCUMENTS = 1000  # the newcomer opens 1,000 documents
PAIR_DOCUMENTS = 100  # the workspace of 100 against 100 single-document peers
HOLDERS = 2  # the documents "held by 2 peers"
SEED = 12  # the cuts and the typing, for every run of the command: the same files
TIMEOUT = 120.0  # for linking, and for opening: 1,000 documents take seconds here
# The floor takes ~15 ms, so one scheduling hiccup on a shared machine moves a single
# sample by half: each run times this many and records the mean.
LOCAL_REPEATS = 5
LATENCY = 0.005  # simulated seconds per hop, as on a LAN (memory only)
SETTLE = 1.0  # simulated seconds for the step 2 still on its way when ``open`` returns


@dataclass(frozen=True, slots=True)
class Newcomer:
    """One newcomer's opening of every document."""

    opened: float  # seconds from the first ``open`` until the last returned
    joined: float  # seconds from ``start()`` until the last ``open`` returned
    received: int  # bytes that came in on its links meanwhile
    messages: int  # data-channel messages on its links, both ways, since each opened
    arrived: int  # of those, the messages that came in


@dataclass(frozen=True, slots=True)
class Pair:
    """Two sides sharing documents, from start until the empty side holds them all."""

    seconds: float
    links: int  # between the two sides, each an RTCPeerConnection per end


async def run(
    options: BenchOptions,
    progress: Progress,
    *,
    documents: int = DOCUMENTS,
    pair_documents: int = PAIR_DOCUMENTS,
) -> BenchResult:
    """Measure the newcomer, memory per open document and one link against one per
    document, ``options.runs`` times each; ``documents`` and ``pair_documents`` shrink the
    workspaces (tests).

    Headline: ``newcomer_vs_local`` (newcomer's opening over the in-process floor),
    ``newcomer_join_vs_local`` (from its start), ``floor_vs_local`` (the floors of
    ``floors.py`` over the same) and ``newcomer_vs_floor``, ``memory_per_document_kib``,
    ``pair_links_workspace`` and ``pair_links_single`` (links between two sides sharing
    ``pair_documents`` documents), and ``single_vs_workspace_formation`` (time for the
    single-document peers over the workspace peers').
    """
    progress(f"typing {documents} files cut from {', '.join(TRACES)} ({RHYTHM_TRACE}'s rhythm)")
    built = time.perf_counter()
    files = build_files(documents, SEED)
    build_seconds = time.perf_counter() - built
    pair_files = files[:pair_documents]
    holder_docs = [file.doc for file in files]
    copies = [file.copy() for file in files]  # the second holder's, for the sync floor
    update_bytes = sum(len(file.doc.get_update()) for file in files)
    progress(
        f"built {len(files)} files ({sum(len(file.content) for file in files)} chars, "
        f"full-state updates {update_bytes} bytes in all) in {build_seconds:.1f} s"
    )
    result = BenchResult(
        "workspace",
        {
            "documents": len(files),
            "pair_documents": len(pair_files),
            "holders": HOLDERS,
            "traces": list(TRACES),
            "rhythm_trace": RHYTHM_TRACE,
            "seed": SEED,
            "chars": sum(len(file.content) for file in files),
            "update_bytes": update_bytes,
            "build_seconds": build_seconds,
            "pair_signaling_connections": {"workspace": 2, "single": 2 * len(pair_files)},
        },
    )
    # The single-document side opens 2 x pair_documents signaling connections, all from
    # 127.0.0.1: past the server's default cap per address (64), so it is raised here.
    settings = SignalingSettings(max_connections_per_address=2 * len(pair_files) + HOLDERS + 1)
    async with SignalingServer(settings=settings) as server:
        async with _holders(server.url, "workspace-newcomer", files):
            for run_index in range(1, options.runs + 1):
                newcomer = await newcomer_once(server.url, "workspace-newcomer", files)
                local = statistics.fmean(local_apply(files) for _ in range(LOCAL_REPEATS))
                sync = statistics.fmean(
                    sync_calls(holder_docs, copies) for _ in range(LOCAL_REPEATS)
                )
                transport = await transport_carries(
                    server.url, f"workspace-floor-{run_index}", newcomer.received, newcomer.arrived
                )
                result.add(f"newcomer opens D={len(files)}", "s", newcomer.opened)
                result.add(f"newcomer joins and opens D={len(files)}", "s", newcomer.joined)
                result.add(f"local apply D={len(files)}", "s", local)
                result.add(f"newcomer received D={len(files)}", "bytes", newcomer.received)
                result.add(f"newcomer messages D={len(files)}", "msgs", newcomer.messages)
                result.add(f"sync calls D={len(files)}", "s", sync)
                result.add(f"transport carries D={len(files)}", "s", transport)
                progress(
                    f"newcomer run {run_index}/{options.runs}: opens {len(files)} in "
                    f"{newcomer.opened:.3f} s ({newcomer.joined:.3f} s from start), "
                    f"{newcomer.messages} messages; local apply {local:.4f} s; floors: "
                    f"sync calls {sync:.4f} s, transport {transport:.4f} s"
                )
        for run_index in range(1, options.runs + 1):
            contenders = {"workspace": workspace_pair_once, "single": single_pairs_once}
            order = list(contenders) if run_index % 2 else list(reversed(contenders))
            pairs = {
                name: await contenders[name](server.url, f"pair-{name}-{run_index}", pair_files)
                for name in order
            }
            for name, pair in pairs.items():
                result.add(f"{name} pair formation D={len(pair_files)}", "s", pair.seconds)
                result.add(f"{name} pair links D={len(pair_files)}", "links", pair.links)
            progress(
                f"pair run {run_index}/{options.runs}: "
                + ", ".join(
                    f"{name} {pair.seconds:.3f} s over {pair.links} links"
                    for name, pair in pairs.items()
                )
            )
    for run_index in range(1, options.runs + 1):
        per_document = await memory_per_document(files, seed=run_index)
        result.add(f"memory per open document D={len(files)}", "KiB", per_document / KIB)
        progress(
            f"memory run {run_index}/{options.runs}: {per_document / KIB:.2f} KiB per document"
        )
    _headline(result, len(files), len(pair_files))
    return result


def _headline(result: BenchResult, documents: int, pair_documents: int) -> None:
    local = result.median(f"local apply D={documents}")
    result.headline["newcomer_vs_local"] = result.median(f"newcomer opens D={documents}") / local
    result.headline["newcomer_join_vs_local"] = (
        result.median(f"newcomer joins and opens D={documents}") / local
    )
    floor = result.median(f"sync calls D={documents}") + result.median(
        f"transport carries D={documents}"
    )
    result.headline["floor_vs_local"] = floor / local
    result.headline["newcomer_vs_floor"] = result.median(f"newcomer opens D={documents}") / floor
    result.headline["memory_per_document_kib"] = result.median(
        f"memory per open document D={documents}"
    )
    for name in ("workspace", "single"):
        result.headline[f"pair_links_{name}"] = result.median(
            f"{name} pair links D={pair_documents}"
        )
    result.headline["single_vs_workspace_formation"] = result.median(
        f"single pair formation D={pair_documents}"
    ) / result.median(f"workspace pair formation D={pair_documents}")


# -- newcomer -------------------------------------------------------------------------------


def _workspace_peer(url: str, room: str) -> Peer:
    return Peer(room=room, signaling=url, host_addresses=LOOPBACK)


async def _open_all(
    peer: Peer, files: Sequence[TraceFile], docs: Sequence[pycrdt.Doc[Any] | None]
) -> list[pycrdt.Doc[Any]]:
    """Open every file's document in ``peer`` at once: ``docs[i]`` adopted, or fetched
    from the linked peers where None."""
    return list(
        await asyncio.gather(
            *(
                peer.open(file.path, timeout=TIMEOUT)
                if doc is None
                else peer.open(file.path, doc=doc, timeout=TIMEOUT)
                for file, doc in zip(files, docs, strict=True)
            )
        )
    )


@asynccontextmanager
async def _holders(url: str, room: str, files: Sequence[TraceFile]) -> AsyncIterator[list[Peer]]:
    """``HOLDERS`` workspace peers holding every file (the first the typed ``Doc``s, the
    others copies), linked with each other and synced; closed on exit."""
    peers = [_workspace_peer(url, room) for _ in range(HOLDERS)]
    try:
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*(peer.start() for peer in peers))
            await asyncio.gather(
                *(peer.wait_for_peers(HOLDERS - 1, timeout=TIMEOUT) for peer in peers)
            )
            await asyncio.gather(
                *(
                    _open_all(
                        peer, files, [file.doc if index == 0 else file.copy() for file in files]
                    )
                    for index, peer in enumerate(peers)
                )
            )
        yield peers
    finally:
        await asyncio.gather(*(peer.aclose() for peer in peers))


async def newcomer_once(url: str, room: str, files: Sequence[TraceFile]) -> Newcomer:
    """A workspace peer joins ``room``, links with every holder, then opens every file."""
    newcomer = _workspace_peer(url, room)
    try:
        started = time.perf_counter()
        await newcomer.start()
        await newcomer.wait_for_peers(HOLDERS, timeout=TIMEOUT)
        linked = time.perf_counter()
        docs = await _open_all(newcomer, files, [None] * len(files))
        stopped = time.perf_counter()
        received = newcomer.bytes_received
        stats = newcomer.link_stats().values()
        arrived = sum(link.messages_received for link in stats)
        messages = arrived + sum(link.messages_sent for link in stats)
        _check(docs, files, "the newcomer")
    finally:
        await newcomer.aclose()
    return Newcomer(stopped - linked, stopped - started, received, messages, arrived)


def _check(docs: Sequence[pycrdt.Doc[Any]], files: Sequence[TraceFile], who: str) -> None:
    """SyncTimeoutError unless each of ``docs`` holds its file's whole history."""
    behind = [
        file.path for doc, file in zip(docs, files, strict=True) if not converged([doc, file.doc])
    ]
    if behind:
        raise SyncTimeoutError(
            f"{who} holds {len(behind)} of {len(files)} documents unlike their holders "
            f"once synced (first: {behind[0]})"
        )


def local_apply(files: Sequence[TraceFile]) -> float:
    """Seconds to apply each file's full state (``get_update()``, encoded inside the clock
    as a holder encodes its step 2) to a fresh ``Doc``, one after another."""
    started = time.perf_counter()
    for file in files:
        pycrdt.Doc().apply_update(file.doc.get_update())
    return time.perf_counter() - started


# -- one link against one per document ------------------------------------------------------


async def workspace_pair_once(url: str, room: str, files: Sequence[TraceFile]) -> Pair:
    """A workspace peer holding ``files`` and an empty one, in ``room``."""
    copies = [file.copy() for file in files]
    holder, reader = _workspace_peer(url, room), _workspace_peer(url, room)
    try:
        started = time.perf_counter()
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(holder.start(), reader.start())
            await _open_all(holder, files, copies)
            await reader.wait_for_peers(1, timeout=TIMEOUT)
            docs = await _open_all(reader, files, [None] * len(files))
        seconds = time.perf_counter() - started
        _check(docs, files, "the reading workspace")
        return Pair(seconds, len(reader.peers))
    finally:
        await asyncio.gather(holder.aclose(), reader.aclose())


async def single_pairs_once(url: str, room: str, files: Sequence[TraceFile]) -> Pair:
    """A single-document ``Peer`` per file and side, each file in a room of its own: one
    side holds the files, the other starts empty."""
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in files]
    holders = [
        Peer(file.copy(), room=f"{room}-{index}", signaling=url, host_addresses=LOOPBACK)
        for index, file in enumerate(files)
    ]
    readers = [
        Peer(doc, room=f"{room}-{index}", signaling=url, host_addresses=LOOPBACK)
        for index, doc in enumerate(docs)
    ]
    try:
        started = time.perf_counter()
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*(peer.start() for peer in (*holders, *readers)))
            await asyncio.gather(*(_synced_with_one(reader) for reader in readers))
        seconds = time.perf_counter() - started
        _check(docs, files, "the single-document readers")
        return Pair(seconds, sum(len(reader.peers) for reader in readers))
    finally:
        await asyncio.gather(*(peer.aclose() for peer in (*holders, *readers)))


async def _synced_with_one(peer: Peer) -> None:
    await peer.wait_for_peers(1, timeout=TIMEOUT)
    await peer.wait_synced(timeout=TIMEOUT)


# -- memory ---------------------------------------------------------------------------------


async def memory_per_document(files: Sequence[TraceFile], *, seed: int) -> float:
    """Bytes of Python heap each open document adds to a workspace peer (module doc)."""
    scenario = functools.partial(_memory_heaps, files, seed)
    linked, bare, empty = await in_virtual_time(scenario, 10 * TIMEOUT)
    return (linked - empty - bare) / (2 * len(files))


async def _memory_heaps(files: Sequence[TraceFile], seed: int) -> tuple[int, int, int]:
    """Heap held by two linked workspace peers with every file open on both, by 2N bare
    copies of the files, and by the two linked peers with nothing open."""
    await _pair_heap(SimNetwork(seed, latency=LATENCY), files[:1], lambda: 0)  # warm-up
    with traced() as heap:
        before = heap()
        copies = [file.copy() for file in files for _ in range(2)]
        bare = heap() - before
        del copies
        empty = await _pair_heap(SimNetwork(seed, latency=LATENCY), (), heap)
        linked = await _pair_heap(SimNetwork(seed, latency=LATENCY), files, heap)
    return linked, bare, empty


async def _pair_heap(
    network: SimNetwork, files: Sequence[TraceFile], heap: Callable[[], int]
) -> int:
    """What ``heap()`` grows by while two workspace peers are linked, the first holding a
    copy of each file, the second having opened it from the first, and settled."""
    before = heap()
    holder, reader = (Peer(room="memory", network=network) for _ in range(2))
    try:
        await asyncio.gather(holder.start(), reader.start())
        await reader.wait_for_peers(1, timeout=TIMEOUT)
        await _open_all(holder, files, [file.copy() for file in files])
        docs = await _open_all(reader, files, [None] * len(files))
        await asyncio.sleep(SETTLE)  # virtual time: the holder's last step 2 arrives
        _check(docs, files, "the memory reader")
        return heap() - before
    finally:
        await asyncio.gather(holder.aclose(), reader.aclose())
