"""The ``crdtsync`` command: ``demo`` replays a real editing trace, ``signal`` runs a server.

The demo runs on the simulated network: one peer per author of a concurrent editing trace,
each typing its own edits at full speed while the mesh carries them, then checks every
replica against the trace's final text.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pycrdt

from crdtsync.errors import ConfigError, CrdtSyncError
from crdtsync.peer import Peer
from crdtsync.peer_process import run_peer
from crdtsync.signaling.server import SignalingServer
from crdtsync.testing.convergence import wait_converged
from crdtsync.testing.traces import (
    TEXT_NAME,
    ConcurrentTrace,
    bundled_trace_path,
    concurrent_updates,
    load_trace,
)
from crdtsync.transport.memory import SimNetwork

__all__ = ["main"]

DEMO_TRACE = "friendsforever"


def _trace_path(name: str) -> Path:
    path = Path(name)
    return path if path.exists() else bundled_trace_path(name)


async def _demo(args: argparse.Namespace) -> int:
    trace = load_trace(_trace_path(args.trace))
    if not isinstance(trace, ConcurrentTrace):
        print(
            f"{args.trace} is a sequential trace; the demo replays concurrent ones", file=sys.stderr
        )
        return 2
    print(f"trace {args.trace}: {len(trace.txns)} edits by {trace.num_agents} authors")
    updates = concurrent_updates(trace)
    network = SimNetwork(seed=args.seed, latency=args.latency, jitter=args.latency / 2)
    # One peer per author types; any further peers only read along.
    count = max(args.peers, trace.num_agents)
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(count)]
    peers = [Peer(doc, room="demo", network=network) for doc in docs]
    started = time.perf_counter()
    for peer in peers:
        await peer.start()
    for peer in peers:
        await peer.wait_for_peers(len(peers) - 1, timeout=10)
    print(f"{len(peers)} peers linked in {time.perf_counter() - started:.3f} s")
    started = time.perf_counter()
    for done, item in enumerate(updates, 1):
        docs[item.agent].apply_update(item.update)
        if done % args.batch == 0:
            await asyncio.sleep(0)  # one event-loop tick: the mesh sends a batch
            if done % (args.batch * 50) == 0:
                print(f"\r  typed {done}/{len(updates)} edits", end="", flush=True)
    print("\r" + " " * 40, end="")
    typed = time.perf_counter() - started
    await wait_converged(docs, timeout=args.timeout)
    converged = time.perf_counter() - started
    print(
        f"\r  typed {len(updates)} edits in {typed:.3f} s; "
        f"all replicas equal after {converged:.3f} s"
    )
    texts = {str(doc.get(TEXT_NAME, type=pycrdt.Text)) for doc in docs}
    ok = texts == {trace.end_content}
    print(
        f"  {network.messages_delivered} messages, {network.bytes_delivered} bytes on the wire "
        f"({network.bytes_delivered / len(peers):.0f} per peer)"
    )
    print(f"  checksum against the trace's end content: {'OK' if ok else 'MISMATCH'}")
    for peer in peers:
        await peer.aclose()
    return 0 if ok else 1


def _server_tls(certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext | None:
    """The TLS context for ``wss://``, or None for plain ``ws://``."""
    if certfile is None:
        if keyfile is not None:
            raise ConfigError("--keyfile needs --certfile")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load certificate {certfile} (key {keyfile}): {exc}") from exc
    return context


async def _signal(args: argparse.Namespace) -> int:
    tls = _server_tls(args.certfile, args.keyfile)
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[int] = loop.create_future()
    # Ctrl-C exits 130 as shells expect; SIGTERM (service managers) is a clean stop.
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        loop.add_signal_handler(signum, _stop, stopped, code)
    async with SignalingServer(args.host, args.port, ssl=tls) as server:
        print(f"signaling server on {server.url} (Ctrl-C to stop)", flush=True)
        code = await stopped
    logging.getLogger("crdtsync.signaling").info("= signaling server stopped")
    return code


def _stop(stopped: asyncio.Future[int], code: int) -> None:
    if not stopped.done():
        stopped.set_result(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crdtsync", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the mesh does")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="replay a concurrent editing trace across peers")
    demo.add_argument("--trace", default=DEMO_TRACE, help="bundled trace name or a path (.json.gz)")
    demo.add_argument(
        "--peers", type=int, default=4, help="peers in the room (at least one per author)"
    )
    demo.add_argument("--latency", type=float, default=0.02, help="simulated one-way latency, s")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulated network")
    demo.add_argument("--batch", type=int, default=20, help="edits typed per event-loop tick")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for convergence")
    serve = commands.add_parser("signal", help="run a signaling server")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    serve.add_argument("--certfile", type=Path, help="PEM certificate chain: serve wss://")
    serve.add_argument("--keyfile", type=Path, help="PEM private key (if not in --certfile)")
    peer = commands.add_parser("peer", help="one collaborator, driven by JSON lines on stdin")
    peer.add_argument("--signaling", required=True, help="signaling server URL")
    peer.add_argument("--room", required=True)
    peer.add_argument("--host-address", action="append", help="ICE host address (repeatable)")
    peer.add_argument("--state", type=Path, help="file the document is loaded from and saved to")
    args = parser.parse_args(argv)
    quiet = logging.INFO if args.command == "signal" else logging.WARNING
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else quiet,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "peer":
            return asyncio.run(run_peer(args.signaling, args.room, args.host_address, args.state))
        return asyncio.run(_demo(args) if args.command == "demo" else _signal(args))
    except CrdtSyncError as exc:
        print(f"crdtsync: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
