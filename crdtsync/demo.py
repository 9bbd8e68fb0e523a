"""``crdtsync demo``: a real editing trace typed concurrently by peers in separate processes.

The demo process runs an embedded signaling server on 127.0.0.1 and starts one process per
peer (``python -m crdtsync.demo``); the peers find each other through the server and then
talk over aiortc data channels, with no server in between. Each author of the concurrent
trace is one peer, typing its own edits (as Yjs updates, converted once by the demo) at
full speed, each as soon as the edits it was made after have arrived; further peers read
along. Workers speak JSON lines: on stdout ``ready``,
``linked``, ``typed`` (progress) and ``done`` (time, bytes, checksum); on stdin ``go`` and
``quit``. The demo draws live progress and ends with a summary checked against the trace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import msgpack
import pycrdt

from crdtsync.errors import ConfigError, SyncTimeoutError
from crdtsync.peer import Peer
from crdtsync.peer_process import emit, read_stdin
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing.traces import (
    TEXT_NAME,
    ConcurrentTrace,
    apply_when_ready,
    bundled_trace_path,
    concurrent_updates,
    load_trace,
)

__all__ = ["DemoOptions", "run_demo"]

ROOM = "demo"
LOOPBACK = ("127.0.0.1",)
PROGRESS_EVERY = 500  # edits between a worker's progress reports
REDRAW_EVERY = 0.1  # seconds between redraws of the progress line


@dataclass(frozen=True, slots=True)
class DemoOptions:
    trace: str = "friendsforever"  # a bundled trace's name, or a path
    peers: int = 4
    batch: int = 20  # edits typed per event-loop tick
    timeout: float = 120.0  # for linking, and again for converging


@dataclass(slots=True)
class _Worker:
    """The demo's view of one peer process."""

    index: int
    process: asyncio.subprocess.Process
    edits: int
    id: str = ""
    typed: int = 0
    done: dict[str, Any] = field(default_factory=dict)

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    async def next_event(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise ConfigError(f"demo peer {self.index} exited (code {await self.process.wait()})")
        event: dict[str, Any] = json.loads(line)
        return event

    async def until(self, key: str) -> Any:
        while key not in (event := await self.next_event()):
            pass
        return event[key]


def _trace(name: str) -> ConcurrentTrace:
    path = Path(name)
    trace = load_trace(path if path.exists() else bundled_trace_path(name))
    if not isinstance(trace, ConcurrentTrace):
        raise ConfigError(f"{name} is a sequential trace; the demo replays concurrent ones")
    return trace


async def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 if every replica ends at the trace's end content."""
    if options.peers < 1 or options.batch < 1 or options.timeout <= 0:
        raise ConfigError("the demo needs --peers >= 1, --batch >= 1 and --timeout > 0")
    trace = _trace(options.trace)
    count = max(options.peers, trace.num_agents)  # at least one peer per author
    print(f"trace {options.trace}: {len(trace.txns)} edits by {trace.num_agents} authors", file=out)
    by_agent: list[list[bytes]] = [[] for _ in range(count)]
    for item in concurrent_updates(trace):
        by_agent[item.agent].append(item.update)
    expected = hashlib.sha256(trace.end_content.encode()).hexdigest()
    workers: list[_Worker] = []
    with tempfile.TemporaryDirectory(prefix="crdtsync-demo-") as folder:
        async with SignalingServer(host="127.0.0.1", port=0) as server:
            try:
                started = time.perf_counter()
                for index, path in enumerate(_write_updates(Path(folder), by_agent)):
                    process = await _spawn(server.url, path, count, expected, options)
                    workers.append(_Worker(index, process, edits=len(by_agent[index])))
                async with asyncio.timeout(options.timeout):
                    for worker in workers:
                        worker.id = await worker.until("ready")
                    for worker in workers:
                        await worker.until("linked")
                linked = time.perf_counter() - started
                print(f"{count} peers linked over WebRTC in {linked:.3f} s", file=out)
                await _type_and_converge(workers, options.timeout, out)
            finally:
                await _stop(workers)
    return _summary(workers, len(trace.txns), expected, out)


def _write_updates(folder: Path, by_peer: list[list[bytes]]) -> list[Path]:
    """One file per peer with the updates it types, for its process to read."""
    paths = [folder / f"peer-{index}.msgpack" for index in range(len(by_peer))]
    for path, updates in zip(paths, by_peer, strict=True):
        path.write_bytes(msgpack.packb(updates, use_bin_type=True))
    return paths


async def _spawn(
    url: str, updates: Path, count: int, expected: str, options: DemoOptions
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crdtsync.demo",
        url,
        str(updates),
        str(count - 1),
        expected,
        str(options.batch),
        str(options.timeout),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def _type_and_converge(workers: list[_Worker], timeout: float, out: TextIO) -> None:
    """Start everyone typing at once; redraw progress until every peer reports ``done``."""
    for worker in workers:
        await worker.send("go")
    started = time.perf_counter()
    total = sum(worker.edits for worker in workers)
    changed = asyncio.Event()

    async def follow(worker: _Worker) -> None:
        try:
            while not worker.done:
                event = await worker.next_event()
                worker.typed = event.get("typed", worker.typed)
                worker.done = event.get("done", {})
                changed.set()
        finally:
            changed.set()  # also when the worker died: the loop below raises its error

    def draw() -> None:
        typed = sum(worker.typed for worker in workers)
        equal = sum(1 for worker in workers if worker.done)
        print(
            f"\r  {time.perf_counter() - started:6.2f} s  typed {typed}/{total} edits, "
            f"{equal}/{len(workers)} replicas at the end state",
            end="",
            flush=True,
            file=out,
        )

    followers = [asyncio.create_task(follow(worker)) for worker in workers]
    live = out.isatty()  # redraw in place on a terminal; a log gets the last line only
    try:
        async with asyncio.timeout(timeout):
            while not all(worker.done for worker in workers):
                for follower in followers:
                    if follower.done():
                        follower.result()  # a worker that died ends the demo with its error
                changed.clear()
                await changed.wait()
                if live:
                    draw()
                    await asyncio.sleep(REDRAW_EVERY)  # throttles redraws, not a wait for state
        draw()
    except TimeoutError:
        print(file=out)
        late = [worker.id for worker in workers if not worker.done]
        raise SyncTimeoutError(f"not converged within {timeout} s: {', '.join(late)}") from None
    finally:
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    print(file=out)


async def _stop(workers: Sequence[_Worker]) -> None:
    for worker in workers:
        if worker.process.returncode is None:
            with contextlib.suppress(ConnectionError):
                await worker.send("quit")
    for worker in workers:
        try:
            async with asyncio.timeout(10):
                await worker.process.wait()
        except TimeoutError:
            worker.process.kill()
            await worker.process.wait()


def _summary(workers: list[_Worker], edits: int, expected: str, out: TextIO) -> int:
    slowest = max(worker.done["converged_after"] for worker in workers)
    print(
        f"  {edits} edits; every replica at the trace's end state after {slowest:.3f} s", file=out
    )
    for worker in workers:
        done = worker.done
        role = f"typed {worker.edits} edits" if worker.edits else "read along"
        print(
            f"  peer {worker.index} ({worker.id[:8]}): {role}; sent {done['bytes_sent']:,} bytes, "
            f"received {done['bytes_received']:,}",
            file=out,
        )
    ok = all(worker.done["sha256"] == expected for worker in workers)
    print(f"  checksum against the trace's end content: {'OK' if ok else 'MISMATCH'}", file=out)
    return 0 if ok else 1


# -- one peer process -----------------------------------------------------------------------------


async def _worker(
    url: str, updates: list[bytes], others: int, expected: str, batch: int, timeout: float
) -> None:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get(TEXT_NAME, type=pycrdt.Text)
    changed = asyncio.Event()
    doc.observe(lambda _event: changed.set())
    commands = await read_stdin()
    async with Peer(doc, room=ROOM, signaling=url, host_addresses=LOOPBACK) as peer:
        emit(ready=peer.id)
        await peer.wait_for_peers(others, timeout=timeout)
        emit(linked=sorted(peer.peers))
        if (await commands.readline()).strip() != b"go":
            return
        started = time.perf_counter()
        async with asyncio.timeout(timeout):
            await _type(doc, updates, batch, changed)
            while (digest := hashlib.sha256(str(text).encode()).hexdigest()) != expected:
                changed.clear()
                await changed.wait()
        emit(
            done={
                "converged_after": time.perf_counter() - started,
                "sha256": digest,
                "bytes_sent": peer.bytes_sent,
                "bytes_received": peer.bytes_received,
            }
        )
        await commands.readline()  # "quit": stay until everyone is done, serving the others


async def _type(
    doc: pycrdt.Doc[Any], updates: list[bytes], batch: int, changed: asyncio.Event
) -> None:
    """Make this author's edits in order, ``batch`` per event-loop tick.

    An edit whose parents have not arrived yet waits for them (see ``apply_when_ready``).
    """
    for typed, update in enumerate(updates, 1):
        await apply_when_ready(doc, update, changed)
        if typed % batch == 0:
            await asyncio.sleep(0)  # one event-loop tick: the mesh sends a batch
        if typed % PROGRESS_EVERY == 0:
            emit(typed=typed)
    emit(typed=len(updates))


def _worker_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m crdtsync.demo")
    parser.add_argument("url")
    parser.add_argument("updates", type=Path)
    parser.add_argument("others", type=int)
    parser.add_argument("expected")
    parser.add_argument("batch", type=int)
    parser.add_argument("timeout", type=float)
    args = parser.parse_args(argv)
    updates: list[bytes] = msgpack.unpackb(args.updates.read_bytes())
    asyncio.run(_worker(args.url, updates, args.others, args.expected, args.batch, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
