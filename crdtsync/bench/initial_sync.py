"""Initial sync: a newcomer joins a room whose document holds a long editing history.

The document is the automerge-paper trace (259,778 txns, one author) replayed into a Text,
one transaction per txn, so it carries the whole history (tombstones included) and ends at
the trace's 104,852-character end content. One or more peers holding it sit in a room over
real aiortc data channels on 127.0.0.1; each run a ``Peer`` with an empty document joins,
and the clock stops once its text reads the end content. Two spans are timed: from
``start()`` (signaling, WebRTC set-up, sync) and from the link's opening (the sync alone,
from the moment the newcomer has the holder's HELLO).

The baseline, measured in turn in each run, is what any correct transfer must do: two raw
``RTCPeerConnection``s set up on loopback with the SDP handed over in-process, then the
sender encodes the full state (``doc.get_update()``) and sends it length-prefixed in
65,536-byte messages (aiortc's advertised maximum) on the freshly opened channel, and the
receiver joins them and applies the update to an empty ``Doc``. Each contender's channel
is new when its clock starts, so SCTP starts from the same congestion window in both; the
baseline has no signaling server, no step-1 round trip and one sender whatever the room
size, which is what makes it a lower bound.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pycrdt

from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.bench.rooms import LOOPBACK, linked_peers, raw_mesh
from crdtsync.errors import ConfigError, SyncTimeoutError
from crdtsync.peer import Peer
from crdtsync.protocol.frames import DEFAULT_MAX_MESSAGE_SIZE
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing.convergence import wait_converged
from crdtsync.testing.traces import (
    TEXT_NAME,
    SequentialTrace,
    apply_patches,
    bundled_trace_path,
    load_trace,
)

__all__ = ["run"]

TRACE = "automerge-paper"
TIMEOUT = 60.0  # for linking, and for syncing
HEADLINE_PEERS = 2  # the room size whose ratios go to the top of the JSON: one holder
HOLDER_CLIENT_ID = 1  # the author's Yjs client id, fixed: every build gives the same bytes
LENGTH_PREFIX = 4  # bytes of the baseline's big-endian length header: up to 4 GiB
# A join takes ~0.1 s, so one scheduling hiccup on a shared machine moves a single sample by
# half: each run times this many joins of each contender, alternating, and records the means.
JOINS_PER_RUN = 5


@dataclass(frozen=True, slots=True)
class History:
    """The document every holder starts from, and what a synced newcomer must show."""

    doc: pycrdt.Doc[Any]
    content: str
    txns: int


@dataclass(frozen=True, slots=True)
class Timing:
    """One join, in seconds: from the start, and from the opening of the link."""

    join: float
    sync: float


def build_history(txns: int | None = None) -> History:
    """Replay the first ``txns`` txns of the trace (all when None), one transaction each."""
    trace = load_trace(bundled_trace_path(TRACE))
    if not isinstance(trace, SequentialTrace):
        raise ConfigError(f"trace {TRACE} is not a sequential trace")
    chosen = trace.txns if txns is None else trace.txns[:txns]
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=HOLDER_CLIENT_ID)
    text = doc.get(TEXT_NAME, type=pycrdt.Text)
    for patches in chosen:
        with doc.transaction():
            apply_patches(text, patches)
    content = str(text)
    if len(chosen) == len(trace.txns) and content != trace.end_content:
        raise ConfigError(
            f"replaying {TRACE} gave {len(content)} characters that differ from its "
            f"{len(trace.end_content)}-character end content"
        )
    return History(doc, content, len(chosen))


def _copy(doc: pycrdt.Doc[Any]) -> pycrdt.Doc[Any]:
    """Another holder's document: the same history, as a peer that synced earlier has it."""
    copy: pycrdt.Doc[Any] = pycrdt.Doc()
    copy.apply_update(doc.get_update())
    return copy


# -- crdtsync -----------------------------------------------------------------------------------


@asynccontextmanager
async def _holders(url: str, room: str, history: History, count: int) -> AsyncIterator[None]:
    """``count`` peers holding the history, linked and synced with each other."""
    docs = [history.doc, *(_copy(history.doc) for _ in range(count - 1))]
    async with linked_peers(url, docs, room=room, timeout=TIMEOUT):
        yield


async def crdtsync_once(url: str, room: str, holders: int, history: History) -> tuple[Timing, int]:
    """A newcomer joins ``room``: its timing, and the bytes it received until synced with all.

    The clock stops when its text reads the end content, whichever holder it came from.
    Outside the clock it then waits for step 2 from every holder and checks its whole
    history (state vector and delete set) against theirs; SyncTimeoutError if it differs.
    """
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get(TEXT_NAME, type=pycrdt.Text)
    newcomer = Peer(doc, room=room, signaling=url, host_addresses=LOOPBACK)
    opened: list[float] = []

    def linked() -> bool:
        # Checked on every change of the mesh: the first time it holds is the link's opening
        # (the holder's HELLO is in; its step 2 needs our step 1 first, a round trip later).
        if newcomer.peers and not opened:
            opened.append(time.perf_counter())
        return bool(newcomer.peers)

    try:
        started = time.perf_counter()
        await newcomer.start()
        await newcomer.wait_for(linked, timeout=TIMEOUT, what="a link to a holder")
        await _wait_content(text, history.content)
        stopped = time.perf_counter()
        await newcomer.wait_for(
            lambda: len(newcomer.peers) >= holders and newcomer.synced,
            timeout=TIMEOUT,
            what=f"step 2 from {holders} holders",
        )
        received = newcomer.bytes_received
        await wait_converged([doc, history.doc], timeout=TIMEOUT)
    finally:
        await newcomer.aclose()
    return Timing(stopped - started, stopped - opened[0]), received


async def _wait_content(text: pycrdt.Text, content: str) -> None:
    """Return once ``text`` reads ``content``, checked after each change to it."""
    changed = asyncio.Event()
    subscription = text.observe(lambda _event: changed.set())
    try:
        async with asyncio.timeout(TIMEOUT):
            while str(text) != content:
                changed.clear()
                await changed.wait()
    except TimeoutError as exc:
        raise SyncTimeoutError(
            f"the newcomer holds {len(str(text))} of {len(content)} characters after {TIMEOUT} s"
        ) from exc
    finally:
        text.unobserve(subscription)


# -- baseline: raw aiortc -----------------------------------------------------------------------


class _Receiver:
    """The baseline's receiving end: joins the length-prefixed messages, applies the update."""

    def __init__(self, content: str) -> None:
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._text = self.doc.get(TEXT_NAME, type=pycrdt.Text)
        self._content = content
        self._buffer = bytearray()

    def on_message(self, message: bytes | str) -> None:
        if isinstance(message, str):
            return
        self._buffer += message
        if len(self._buffer) < LENGTH_PREFIX:
            return
        size = int.from_bytes(self._buffer[:LENGTH_PREFIX], "big")
        if len(self._buffer) < LENGTH_PREFIX + size:
            return
        self.doc.apply_update(bytes(self._buffer[LENGTH_PREFIX:]))
        # Left pending on a mismatch: the wait then times out and says so.
        if str(self._text) == self._content and not self.done.done():
            self.done.set_result(None)


def split_payload(update: bytes, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> list[bytes]:
    """``update`` behind its length, cut into messages of at most ``max_message_size`` bytes."""
    payload = len(update).to_bytes(LENGTH_PREFIX, "big") + update
    return [payload[i : i + max_message_size] for i in range(0, len(payload), max_message_size)]


async def baseline_once(doc: pycrdt.Doc[Any], content: str) -> Timing:
    """Set up a raw channel pair, send ``doc``'s full state on it, apply it on the other side."""
    receiver = _Receiver(content)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(TIMEOUT), raw_mesh(2, timeout=TIMEOUT) as mesh:
            linked = time.perf_counter()
            mesh.channels[1][0].on("message", receiver.on_message)
            for message in split_payload(doc.get_update()):
                mesh.channels[0][1].send(message)
            await receiver.done
            stopped = time.perf_counter()
    except TimeoutError as exc:
        raise SyncTimeoutError(f"baseline: no synced receiver within {TIMEOUT} s") from exc
    return Timing(stopped - started, stopped - linked)


# -- the benchmark ------------------------------------------------------------------------------


async def run(options: BenchOptions, progress: Progress, *, txns: int | None = None) -> BenchResult:
    """Time ``options.runs`` runs of ``JOINS_PER_RUN`` joins per room size, and the baseline.

    Room sizes (newcomer included) default to 2 and 3, i.e. one or two holders; the top-level
    ``ratio_to_transfer_apply`` (crdtsync's link-open-to-synced time / the baseline's transfer
    and apply) and ``join_ratio`` (start-to-synced / baseline set-up, transfer and apply) are
    for 2 peers when measured, else for the first size given. Each series holds per run the
    mean of its joins. ``txns`` replays only a prefix of the trace (tests); every join checks
    the newcomer's content inside the clock and its whole history (state vector and delete
    set) after it.
    """
    sizes = options.peers_or(2, 3)
    progress(f"replaying {TRACE} into the holders' document (10-30 s)")
    built = time.perf_counter()
    history = build_history(txns)
    build_seconds = time.perf_counter() - built
    update = history.doc.get_update()
    progress(
        f"built {TRACE} ({history.txns} txns, {len(history.content)} chars) "
        f"in {build_seconds:.1f} s: full-state update {len(update)} bytes"
    )
    result = BenchResult(
        "initial-sync",
        {
            "trace": TRACE,
            "peers": list(sizes),
            "txns": history.txns,
            "chars": len(history.content),
            "update_bytes": len(update),
            "baseline_messages": len(split_payload(update)),
            "build_seconds": build_seconds,
        },
    )
    async with SignalingServer() as server:
        for peers in sizes:
            room = f"initial-sync-{peers}"
            async with _holders(server.url, room, history, peers - 1):
                for run in range(1, options.runs + 1):
                    ours_joins, base_joins = [], []
                    for _ in range(JOINS_PER_RUN):
                        timing, received = await crdtsync_once(server.url, room, peers - 1, history)
                        ours_joins.append(timing)
                        base_joins.append(await baseline_once(history.doc, history.content))
                    ours, base = _mean(ours_joins), _mean(base_joins)
                    _record(result, peers, ours, base, received)
                    progress(
                        f"N={peers} run {run}/{options.runs}: crdtsync {ours.join:.4f} s "
                        f"(from link {ours.sync:.4f} s), baseline {base.join:.4f} s "
                        f"(transfer + apply {base.sync:.4f} s)"
                    )
            _ratios(result, peers)
    headline = HEADLINE_PEERS if HEADLINE_PEERS in sizes else sizes[0]
    result.params["headline_peers"] = headline
    result.lead_with(f"_n{headline}")
    return result


def _mean(timings: list[Timing]) -> Timing:
    return Timing(
        statistics.fmean(timing.join for timing in timings),
        statistics.fmean(timing.sync for timing in timings),
    )


def _record(result: BenchResult, peers: int, ours: Timing, base: Timing, received: int) -> None:
    result.add(f"crdtsync join N={peers}", "s", ours.join)
    result.add(f"crdtsync from link N={peers}", "s", ours.sync)
    result.add(f"baseline join N={peers}", "s", base.join)
    result.add(f"baseline transfer+apply N={peers}", "s", base.sync)
    result.add(f"newcomer received N={peers}", "bytes", received)


def _ratios(result: BenchResult, peers: int) -> None:
    sync = result.median(f"crdtsync from link N={peers}")
    join = result.median(f"crdtsync join N={peers}")
    result.headline[f"ratio_to_transfer_apply_n{peers}"] = sync / result.median(
        f"baseline transfer+apply N={peers}"
    )
    result.headline[f"join_ratio_n{peers}"] = join / result.median(f"baseline join N={peers}")
