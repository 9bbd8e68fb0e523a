"""The ``crdtsync`` command: ``demo`` replays a real editing trace over WebRTC, ``signal``
runs a signaling server, ``peer`` is one collaborator driven by JSON lines, ``chaos`` kills
and restarts peers and the server and checks that nothing flushed was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from crdtsync.bench.suite import BENCHMARKS
from crdtsync.demo import DemoOptions, run_demo
from crdtsync.errors import ConfigError, CrdtSyncError
from crdtsync.peer import DIALECTS
from crdtsync.peer_process import run_peer, stop_signals
from crdtsync.signaling.log_format import json_handler, log_fields
from crdtsync.signaling.server import SignalingServer
from crdtsync.signaling.turn import DEFAULT_TURN_TTL, TurnSettings

__all__ = ["main"]


async def _bench(args: argparse.Namespace) -> int:
    from crdtsync.bench.report import BenchOptions, plot
    from crdtsync.bench.suite import BENCHMARKS, load

    names = list(BENCHMARKS) if args.name is None else [args.name]
    if args.json is not None and len(names) > 1:
        raise ConfigError("--json names one file: give a benchmark NAME, or use --out DIR")
    if args.plot and args.json is None and args.out is None:
        raise ConfigError("--plot draws beside the JSON: give --json PATH or --out DIR")
    options = BenchOptions(runs=args.runs, peers=tuple(args.peers or ()), edits=args.edits)
    for name in names:
        print(f"{name}: {options.runs} runs", flush=True)
        result = await load(name)(options, lambda line: print(f"  {line}", flush=True))
        print(result.table(), flush=True)
        path = args.json or (args.out / f"{name}.json" if args.out is not None else None)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
            print(f"written to {path}")
            if args.plot:
                plot(result, path.with_suffix(".png"))
                print(f"drawn in {path.with_suffix('.png')}")
    return 0


async def _chaos(args: argparse.Namespace) -> int:
    from crdtsync.chaos import ChaosOptions, run_chaos

    seed = random.randrange(1 << 32) if args.seed is None else args.seed
    options = ChaosOptions(args.peers, args.seconds, seed, args.dir, verbose=args.verbose)
    report = await run_chaos(options, lambda line: print(f"chaos: {line}", flush=True))
    print(
        f"chaos: seed {seed}: {report.steps} steps, {report.kills} kills, "
        f"{report.server_restarts} server restarts, {report.typed} words typed, "
        f"{report.flushed} flushed; settled in {report.settle_seconds:.1f} s"
    )
    for problem in report.problems:
        print(f"chaos: FAILED: {problem}")
    if not report.ok:
        print(
            f"chaos: replay with: crdtsync chaos --peers {args.peers} --seconds {args.seconds:g} "
            f"--seed {seed}"
        )
        return 1
    print(f"chaos: seed {seed}: every flushed edit is on every peer, all replicas equal")
    return 0


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


def _turn(urls: list[str] | None, secret: str | None, ttl: float) -> TurnSettings | None:
    """What ``--turn-url`` and ``--turn-secret`` ask for: both, or neither."""
    if (urls is None) != (secret is None):
        raise ConfigError("--turn-url and --turn-secret go together")
    return None if urls is None or secret is None else TurnSettings(urls, secret, ttl)


async def _signal(args: argparse.Namespace) -> int:
    tls = _server_tls(args.certfile, args.keyfile)
    turn = _turn(args.turn_url, args.turn_secret, args.turn_ttl)
    stopped = stop_signals()
    async with SignalingServer(
        args.host, args.port, ssl=tls, redis=args.redis, turn=turn
    ) as server:
        print(f"signaling server on {server.url} (Ctrl-C to stop)", flush=True)
        code = await stopped
        # Clients hear 1001 (going away) and move to another server.
        await server.drain()
    logging.getLogger("crdtsync.signaling").info(
        "= signaling server stopped", extra=log_fields("stopped")
    )
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crdtsync", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the mesh does")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench", help="measure against the alternatives (see the README's Performance section)"
    )
    bench.add_argument(
        "name", nargs="?", choices=list(BENCHMARKS), help="which benchmark (default: all)"
    )
    bench.add_argument(
        "--peers", type=int, nargs="+", help="room sizes (default: each benchmark's own)"
    )
    bench.add_argument(
        "--edits",
        type=int,
        default=1000,
        help="edits per peer in convergence; caps the room's edits in scale",
    )
    bench.add_argument("--runs", type=int, default=3, help="runs; figures are medians")
    bench.add_argument("--json", type=Path, help="write the one benchmark's JSON to this file")
    bench.add_argument("--out", type=Path, help="write each benchmark's JSON to DIR/NAME.json")
    bench.add_argument(
        "--plot", action="store_true", help="also draw each JSON as a PNG beside it (matplotlib)"
    )
    defaults = DemoOptions()
    demo = commands.add_parser(
        "demo", help="peer processes type a concurrent editing trace over WebRTC"
    )
    demo.add_argument("--trace", default=defaults.trace, help="bundled trace name or a path")
    demo.add_argument(
        "--peers", type=int, default=defaults.peers, help="peer processes (at least one per author)"
    )
    demo.add_argument(
        "--batch", type=int, default=defaults.batch, help="edits typed per event-loop tick"
    )
    demo.add_argument(
        "--timeout", type=float, default=defaults.timeout, help="seconds to link, and to converge"
    )
    serve = commands.add_parser("signal", help="run a signaling server")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    serve.add_argument("--certfile", type=Path, help="PEM certificate chain: serve wss://")
    serve.add_argument("--keyfile", type=Path, help="PEM private key (if not in --certfile)")
    serve.add_argument(
        "--redis", metavar="URL", help="share rooms with other servers through Redis (redis://...)"
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per line (event, room, peer, code), for log collectors",
    )
    serve.add_argument(
        "--turn-url",
        action="append",
        help="TURN server to hand each peer, e.g. turn:host:3478?transport=udp (repeatable)",
    )
    serve.add_argument(
        "--turn-secret", help="the TURN server's static-auth-secret (coturn use-auth-secret)"
    )
    serve.add_argument(
        "--turn-ttl",
        type=float,
        default=DEFAULT_TURN_TTL,
        help="seconds the TURN credentials stay valid",
    )
    peer = commands.add_parser("peer", help="one collaborator, driven by JSON lines on stdin")
    peer.add_argument(
        "--signaling",
        action="append",
        required=True,
        help="signaling server URL; repeat it to fail over: the peer moves to the next when "
        "one cannot be reached or goes away",
    )
    peer.add_argument("--room", required=True)
    peer.add_argument("--host-address", action="append", help="ICE host address (repeatable)")
    peer.add_argument("--store", type=Path, help="SQLite file that keeps the document (see Peer)")
    peer.add_argument(
        "--dialect",
        choices=DIALECTS,
        default="crdtsync",
        help="crdtsync's own protocol, or y-webrtc to share a room with Yjs browser peers",
    )
    peer.add_argument("--password", help="room password (y-webrtc: as its `password` option)")
    peer.add_argument(
        "--serve",
        action="store_true",
        help="keep running when input ends (a service, e.g. the always-on keeper of a room); "
        "stop with SIGTERM or Ctrl-C",
    )
    chaos = commands.add_parser(
        "chaos", help="kill and restart peers and the server; check no flushed edit is lost"
    )
    chaos.add_argument("--peers", type=int, default=5, help="peer processes, each with a store")
    chaos.add_argument("--seconds", type=float, default=120.0, help="length of the fault plan")
    chaos.add_argument("--seed", type=int, help="replays a run's schedule (default: random)")
    chaos.add_argument("--dir", type=Path, help="keep stores and peer logs here")
    args = parser.parse_args(argv)
    quiet = logging.INFO if args.command == "signal" else logging.WARNING
    as_json = args.command == "signal" and args.log_format == "json"
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else quiet,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[json_handler()] if as_json else None,
    )
    try:
        if args.command == "peer":
            return asyncio.run(
                run_peer(
                    args.signaling,
                    args.room,
                    args.host_address,
                    args.store,
                    dialect=args.dialect,
                    password=args.password,
                    serve=args.serve,
                )
            )
        if args.command == "bench":
            return asyncio.run(_bench(args))
        if args.command == "chaos":
            return asyncio.run(_chaos(args))
        if args.command == "demo":
            options = DemoOptions(args.trace, args.peers, args.batch, args.timeout)
            return asyncio.run(run_demo(options))
        return asyncio.run(_signal(args))
    except CrdtSyncError as exc:
        print(f"crdtsync: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
