"""Editor latency: a keystroke in one editor until the change is in another editor's TextArea.

Two processes on 127.0.0.1, linked over WebRTC through our signaling server: this one types
into ``examples/editor.py``'s app under Textual's Pilot, one key at a time; a receiver
process runs the same app headless and reports the moment each change is in its
``TextArea`` (``CLOCK_MONOTONIC``, which both processes share). The same 200 one-character
inserts are then timed between two bare peers in two processes (``Text.insert`` in, a
document observer out): the edit ``crdtsync bench latency`` measures, without the editors.
Their difference is what the editor adds (typing through Textual, the minimal Yjs edit,
applying the delta to the widget, keeping the cursor). The 200 keystrokes make one line of
200 characters on an 80-column screen: editors that wrap it (their default), and editors
that scroll it sideways (``--no-wrap``), each keystroke past the width then redrawing every
row. On two CPUs or more, bare peers and editors are timed once more with each process on a
CPU of its own, as two users' editors run: the others share the machine's CPUs, and the
kernel may wake the receiver on the core where the typist is still busy with its redraw.

Keystrokes are paced as in ``bench latency``: the next one only once the last was seen and
the batching window has closed, so each is one edit's latency, not batching's.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pycrdt

from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.errors import ConfigError
from crdtsync.peer import Peer
from crdtsync.protocol.batching import DEFAULT_BATCH_WINDOW
from crdtsync.signaling.server import SignalingServer

__all__ = ["run"]

KEYSTROKES = 200
TIMEOUT = 60.0  # for linking, and for one keystroke to arrive
QUIET_GAP = DEFAULT_BATCH_WINDOW + 0.005  # as bench latency: the next edit finds the window shut
LOOPBACK = ("127.0.0.1",)
ROOM = "editor-latency"
MODES = ("editor", "editor-no-wrap", "bare")
A_CORE_EACH = ", a core each"  # the series of processes on a CPU of their own
EDITOR_MODULE = "crdtsync_editor_example"  # the name examples/editor.py is loaded under


def _now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def load_editor() -> ModuleType:
    """``examples/editor.py`` of the source tree this package runs from (it is an example,
    not part of the package), loaded once; ConfigError if it or Textual is missing."""
    if (loaded := sys.modules.get(EDITOR_MODULE)) is not None:
        return loaded
    for folder in Path(__file__).resolve().parents:
        path = folder / "examples" / "editor.py"
        if path.exists():
            break
    else:
        raise ConfigError("bench editor needs examples/editor.py: run it from a crdtsync clone")
    if importlib.util.find_spec("textual") is None:
        raise ConfigError("bench editor needs Textual: pip install -e '.[editor]'")
    spec = importlib.util.spec_from_file_location(EDITOR_MODULE, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and Textual look modules up by name
    spec.loader.exec_module(module)
    return module


# -- the receiver process ---------------------------------------------------------------------


async def receive(url: str, mode: str, cpu: int | None = None) -> None:
    """Join the room (on CPU ``cpu`` alone, if given); print ``{"ready": id}``, then
    ``{"length": n, "at": t}`` per change.

    A change is seen from a document observer, as in ``bench latency``: pycrdt calls those
    once the text's observers ran (among a text's observers, the order is not the order
    they were made in), so in an editor the change is in its widget by then."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    peer = Peer(pycrdt.Doc(), room=ROOM, signaling=url, host_addresses=LOOPBACK)
    doc = peer.doc()
    text = doc.get("text", type=pycrdt.Text)
    length = 0
    widget: Any = None  # the receiving editor's TextArea

    def note(_event: object) -> None:
        nonlocal length
        length = len(text)  # a text's observer may read it, a document's observer not

    def seen(_event: object) -> None:
        if widget is None or len(widget.text) == length:
            print(json.dumps({"length": length, "at": _now()}), flush=True)
        else:  # the widget has not taken it yet: report once it has
            asyncio.get_running_loop().call_soon(seen, None)

    async with peer:
        print(json.dumps({"ready": peer.id}), flush=True)
        subscriptions = text.observe(note), doc.observe(seen)
        if mode == "bare":
            await _until_stdin_closes()
        else:
            app = load_editor().EditorApp(peer, "receiver", soft_wrap=mode == "editor")
            widget = app.editor
            async with app.run_test():
                await _until_stdin_closes()
        text.unobserve(subscriptions[0])
        doc.unobserve(subscriptions[1])


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


# -- this process -----------------------------------------------------------------------------


@asynccontextmanager
async def _receiver(
    url: str, mode: str, cpu: int | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    pinned = () if cpu is None else ("--cpu", str(cpu))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crdtsync.bench.editor", "--receive", url, "--mode", mode,
        *pinned, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await _line(process, "ready")
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            async with asyncio.timeout(TIMEOUT):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


async def _line(process: asyncio.subprocess.Process, key: str) -> dict[str, Any]:
    assert process.stdout is not None
    async with asyncio.timeout(TIMEOUT):
        while True:
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError(f"the receiver exited before {key!r}")
            message: dict[str, Any] = json.loads(line)
            if key in message:
                return message


async def _timed(
    process: asyncio.subprocess.Process, type_one: Callable[[], Awaitable[None]]
) -> list[float]:
    """One untimed keystroke (it meets the last of the link setup), then KEYSTROKES timed."""
    delays = []
    for length in range(1, KEYSTROKES + 2):
        started = _now()
        await type_one()
        while (seen := await _line(process, "length"))["length"] < length:
            pass
        if length > 1:
            delays.append(seen["at"] - started)
        await asyncio.sleep(QUIET_GAP)  # pacing, not synchronisation: see QUIET_GAP
    return delays


def separate_cores() -> tuple[int, int] | None:
    """Two CPUs this process may run on, one for the typist and one for the receiver; None
    with fewer."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


@contextmanager
def _on_cpu(cpu: int | None) -> Iterator[None]:
    """This thread (the event loop's) on CPU ``cpu`` alone while inside, if given."""
    if cpu is None:
        yield
        return
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


async def editor_once(
    url: str, *, soft_wrap: bool = True, cores: tuple[int, int] | None = None
) -> list[float]:
    """Keystrokes typed into an editor under Pilot, seen in the receiver's editor; both
    wrap long lines (the editor's default) or, with ``soft_wrap=False``, scroll sideways.
    With ``cores``, the typist and the receiver each run on a CPU of their own, as two
    users' editors do: the kernel then never wakes one on the core the other is busy on."""
    editor = load_editor()
    typist_cpu, receiver_cpu = cores or (None, None)
    mode = "editor" if soft_wrap else "editor-no-wrap"
    async with _receiver(url, mode, receiver_cpu) as process:
        peer = Peer(pycrdt.Doc(), room=ROOM, signaling=url, host_addresses=LOOPBACK)
        with _on_cpu(typist_cpu):
            async with peer:
                await peer.wait_for_peers(1, timeout=TIMEOUT)
                await peer.wait_synced(timeout=TIMEOUT)
                app = editor.EditorApp(peer, "typist", soft_wrap=soft_wrap)
                async with app.run_test() as pilot:
                    return await _timed(process, lambda: pilot.press("x"))


async def bare_once(url: str, *, cores: tuple[int, int] | None = None) -> list[float]:
    """The same inserts between two bare peers: what ``bench latency`` times (``cores``: as
    for ``editor_once``)."""
    typist_cpu, receiver_cpu = cores or (None, None)
    async with _receiver(url, "bare", receiver_cpu) as process:
        peer = Peer(pycrdt.Doc(), room=ROOM, signaling=url, host_addresses=LOOPBACK)
        text = peer.doc().get("text", type=pycrdt.Text)

        async def type_one() -> None:
            text.insert(len(text), "x")

        with _on_cpu(typist_cpu):
            async with peer:
                await peer.wait_for_peers(1, timeout=TIMEOUT)
                await peer.wait_synced(timeout=TIMEOUT)
                return await _timed(process, type_one)


Contender = Callable[[str], Awaitable[list[float]]]


def contenders(cores: tuple[int, int] | None) -> dict[str, Contender]:
    """What each run times, by series name: bare peers and editors (wrapping, and not) on
    the machine's shared CPUs, and, given ``cores``, bare peers and editors on a CPU each."""
    timed: dict[str, Contender] = {
        "bare peers": bare_once,
        "editors": editor_once,
        "editors no-wrap": functools.partial(editor_once, soft_wrap=False),
    }
    if cores is not None:
        timed[f"bare peers{A_CORE_EACH}"] = functools.partial(bare_once, cores=cores)
        timed[f"editors{A_CORE_EACH}"] = functools.partial(editor_once, cores=cores)
    return timed


async def run(options: BenchOptions, progress: Progress) -> BenchResult:
    """Headline: ``p50_ms``, ``p99_ms`` (editors, wrapping long lines as they do by
    default), and ``added_p50_ms``, ``added_p99_ms`` (editors minus bare peers; the issue's
    target: at most 2 ms at p99), each process on a CPU of its own as two users' editors
    are (on a machine of one CPU: sharing it); ``shared_added_p50_ms`` and
    ``shared_added_p99_ms``, the same with both processes on the machine's shared CPUs.
    The series also hold editors that scroll long lines (``--no-wrap``)."""
    load_editor()  # fail early, with the reason
    cores = separate_cores()
    result = BenchResult(
        "editor",
        {"keystrokes": KEYSTROKES, "quiet_gap_ms": QUIET_GAP * 1000, "cores": cores},
    )
    for run in range(1, options.runs + 1):
        line = []
        for name, once in contenders(cores).items():
            async with SignalingServer(host="127.0.0.1", port=0) as server:
                delays = await once(server.url)
            p50 = statistics.median(delays) * 1000
            p99 = statistics.quantiles(delays, n=100, method="inclusive")[98] * 1000
            result.add(f"{name} p50", "ms", p50)
            result.add(f"{name} p99", "ms", p99)
            line.append(f"{name} p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        progress(f"run {run}/{options.runs}: " + "; ".join(line))
    placed = A_CORE_EACH if cores is not None else ""
    added = {"": placed, "shared_": ""}  # headline prefix: the series' placement
    for percentile in ("p50", "p99"):
        result.headline[f"{percentile}_ms"] = result.median(f"editors{placed} {percentile}")
        for prefix, series in added.items():
            result.headline[f"{prefix}added_{percentile}_ms"] = result.median(
                f"editors{series} {percentile}"
            ) - result.median(f"bare peers{series} {percentile}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="the receiver of bench editor")
    parser.add_argument("--receive", required=True, metavar="URL")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--cpu", type=int, help="run on this CPU alone")
    args = parser.parse_args()
    asyncio.run(receive(args.receive, args.mode, args.cpu))


if __name__ == "__main__":
    main()
