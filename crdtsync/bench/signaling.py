"""Signaling load: K simulated clients in rooms of 8, against our server and y-webrtc's.

Each server runs in a process of its own on 127.0.0.1: y-webrtc's ``bin/server.js`` (Node,
``PORT``), and ours from ``signaling_load.py serve`` with the per-address connection caps
raised (every simulated client comes from 127.0.0.1; see ``bench_settings``). The clients run
in another process, ``signaling_load.py load``, with asyncio and websockets (2,000 by default,
``--peers`` sets K). In each run, in alternating order:

- y-webrtc's dialect against y-webrtc's server, then against ours: each client subscribes to
  its room and announces itself, then sends a ``signal`` with ``to`` (a ~1.5 KB offer) to the
  next member of its room, once a second, stamped with the wall clock; the receiver's clock
  minus the stamp is the relay latency (one machine, one clock). y-webrtc's server sends every
  publish to the whole topic, the sender included (8 frames); ours only to its ``to``.
- then, against the same server of ours, the hostile mix, while the clients go on: 1,000 idle
  connections (a room each, pings only) and 100 that never read (a 4 KiB receive buffer, in
  busy rooms where talkers broadcast 48 KiB frames at our default byte rate), for 13 s: long
  enough for our server to drop those that do not read (``send_timeout``, 10 s, once the
  kernel's buffers are full). y-webrtc's server has no such limits, nor any other: the mix
  would only measure how long it holds out, so it runs against ours only.
- our native dialect against a fresh server of ours: login (``Identity.prove``), join, and the
  same signals (``Signal`` to one peer id).
- both dialects again against one server of ours sharing rooms through a real ``redis-server``
  (``--redis``): the backplane's cost to a server (a seat claimed per join, seats renewed each
  second). Scale-out itself is tested for correctness across processes, not timed: the
  machines here have 2 cores. Without ``redis-server`` these two are left out, with the reason.

Figures: joins/s (every client connected and subscribed, a ping answered, or logged in and
joined); relay p50 and p99 over a 2 s window after a 0.5 s warm-up; relay throughput per
server process, as signals relayed per CPU-second the server used in the window (user +
system, ``/proc/PID/stat``): the load is paced below either server's capacity, so the rates
achieved are the offered ones, and the CPU each relay costs says what one process can carry;
the server's RSS (``VmRSS``) per connection, (under load - before any) / K; and with the
hostile mix, RSS growth (its peak over the RSS before the mix), non-readers dropped, p50, p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from crdtsync.bench import node
from crdtsync.bench.report import BenchOptions, BenchResult, Progress
from crdtsync.errors import ConfigError, SyncTimeoutError, TransportError
from crdtsync.testing.redis_server import RedisServer

__all__ = ["find_ywebrtc_server", "run"]

CLIENTS = 2000  # thousands of clients on one machine, as a busy deployment has
RATE = 1.0  # signals per client per second: K/s offered, y-webrtc's server sends 8x that
WARMUP = 0.5
SECONDS = 2.0
IDLE = 1000
NON_READING = 100
HOSTILE_SECONDS = 13.0  # send_timeout (10 s) after the non-readers' buffers fill
START_TIMEOUT = 10.0  # for our server to print its URL
LOAD_TIMEOUT = 120.0  # for a load process: a default one takes under 20 s
LOAD = "crdtsync.bench.signaling_load"


def find_ywebrtc_server() -> Path:
    """The folder holding node_modules with y-webrtc (its server), or ConfigError."""
    return node.find_node_modules(("y-webrtc",), "bench signaling")


# -- the servers, each in its own process ---------------------------------------------------------


@contextlib.asynccontextmanager
async def _ours(redis: str | None = None) -> AsyncIterator[tuple[str, int]]:
    """Our server (``signaling_load serve``, with ``redis`` its backplane): (its URL, first on
    its stdout; its pid)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        LOAD,
        "serve",
        "--port",
        "0",
        *(("--redis", redis) if redis else ()),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                line = await process.stdout.readline()
        except TimeoutError as exc:
            raise SyncTimeoutError(f"our server printed no URL within {START_TIMEOUT} s") from exc
        url = line.decode().strip()
        if not url.startswith("ws://127.0.0.1:"):
            raise TransportError(f"our server did not start (exit {process.returncode})")
        yield url, process.pid
    finally:
        await node.stop_process(process)


# -- the load, in a process of its own ------------------------------------------------------------


async def _load(url: str, pid: int, *arguments: str) -> dict[str, Any]:
    """One ``signaling_load load`` on the server at ``url`` (process ``pid``): its figures."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        LOAD,
        "load",
        "--url",
        url,
        "--server-pid",
        str(pid),
        *arguments,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(LOAD_TIMEOUT):
            out, err = await process.communicate()
    except TimeoutError as exc:
        process.kill()
        await process.wait()
        raise SyncTimeoutError(f"signaling load not done within {LOAD_TIMEOUT} s") from exc
    if process.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise TransportError(f"signaling load exited with {process.returncode}: {last[0]}")
    figures: dict[str, Any] = json.loads(out)
    return figures


def _record(result: BenchResult, name: str, figures: dict[str, Any]) -> None:
    relay = figures["relay"]
    result.add(f"joins, {name}", "joins/s", figures["joins_per_s"])
    result.add(f"relay p50, {name}", "ms", relay["p50_ms"])
    result.add(f"relay p99, {name}", "ms", relay["p99_ms"])
    result.add(f"relayed, {name}", "msg/s", relay["relayed_per_s"])
    result.add(f"relayed per server CPU-s, {name}", "msg/s", relay["relayed_per_server_cpu_s"])
    result.add(f"server RSS per connection, {name}", "KiB", figures["rss_per_connection_kib"])


async def run(
    options: BenchOptions,
    progress: Progress,
    *,
    rate: float = RATE,
    seconds: float = SECONDS,
    idle: int = IDLE,
    non_reading: int = NON_READING,
    hostile_seconds: float = HOSTILE_SECONDS,
) -> BenchResult:
    """``options.runs`` runs of K clients (``options.peers[0]``, default 2,000) on each server;
    ``rate``, ``seconds`` and the hostile mix (``idle``, ``non_reading``, ``hostile_seconds``)
    scale a run down for tests.

    Series: joins/s, relay p50 and p99, signals relayed per second and per server CPU-second,
    server RSS per connection, for each of ``y-webrtc server``, ``crdtsync`` (y-webrtc's
    dialect) and ``crdtsync native``, and both of ours ``+ Redis``; the hostile mix's p50,
    p99, RSS growth and non-readers dropped. Headline: ``relay_throughput_ratio_to_ywebrtc``
    (ours over theirs, relays per CPU-second of the server process, y-webrtc's dialect),
    ``p99_relay_ms_crdtsync``, ``p99_relay_ms_ywebrtc``, ``rss_per_connection_kib`` (ours),
    ``rss_growth_with_hostile_mix_kib``, and with Redis ``p50_relay_ratio_with_redis`` and
    ``p50_relay_ratio_with_redis_native`` (p50 with the backplane over p50 without).
    """
    root = find_ywebrtc_server()
    clients = options.peers[0] if options.peers else CLIENTS
    common = [
        *("--clients", str(clients), "--rate", str(rate)),
        *("--warmup", str(WARMUP), "--seconds", str(seconds)),
    ]
    hostile = [
        *("--hostile", "--idle", str(idle), "--non-reading", str(non_reading)),
        *("--hostile-seconds", str(hostile_seconds)),
    ]
    result = BenchResult(
        "signaling",
        {
            "clients": clients,
            "room_size": 8,
            "signals_per_client_per_s": rate,
            "window_s": seconds,
            "idle": idle,
            "non_reading": non_reading,
            "hostile_s": hostile_seconds,
            "servers": "y-webrtc bin/server.js (Node); crdtsync SignalingServer, caps per "
            "address raised; each in its own process, the clients in another",
            "fan_out": "y-webrtc's server sends a signal to its whole room (8 frames, the "
            "sender's included); ours only to its 'to'",
            "hostile_mix": "ours only: y-webrtc's server has no limits",
        },
    )
    async with contextlib.AsyncExitStack() as stack:
        redis: RedisServer | None = None
        try:
            redis = await RedisServer.start()
        except ConfigError as exc:
            progress(f"crdtsync + Redis left out: {exc}")
        else:
            stack.push_async_callback(redis.stop)
        for run in range(1, options.runs + 1):
            await _one_run(result, progress, run, options.runs, root, common, hostile, redis)
    _headline(result, with_redis=redis is not None)
    return result


async def _one_run(
    result: BenchResult,
    progress: Progress,
    run: int,
    runs: int,
    root: Path,
    common: list[str],
    hostile: list[str],
    redis: RedisServer | None,
) -> None:
    """Every contender once, in an order that alternates from run to run."""
    figures: dict[str, dict[str, Any]] = {}
    order = ("y-webrtc server", "crdtsync") if run % 2 else ("crdtsync", "y-webrtc server")
    for name in order:
        if name == "crdtsync":
            async with _ours() as (url, pid):
                figures[name] = await _load(url, pid, *common, *hostile)
        else:
            async with node.ywebrtc_server(root) as theirs:
                figures[name] = await _load(theirs.url, theirs.pid, *common)
    async with _ours() as (url, pid):
        figures["crdtsync native"] = await _load(url, pid, *common, "--dialect", "native")
    if redis is not None:
        for name, dialect in (
            ("crdtsync + Redis", "y-webrtc"),
            ("crdtsync native + Redis", "native"),
        ):
            async with _ours(redis.url) as (url, pid):
                figures[name] = await _load(url, pid, *common, "--dialect", dialect)
    for name, figure in figures.items():
        _record(result, name, figure)
    mix = figures["crdtsync"]["hostile"]
    result.add("relay p50, crdtsync + hostile mix", "ms", mix["p50_ms"])
    result.add("relay p99, crdtsync + hostile mix", "ms", mix["p99_ms"])
    result.add("server RSS growth, hostile mix", "KiB", mix["rss_growth_kib"])
    result.add("non-readers dropped, hostile mix", "count", mix["non_reading_dropped"])
    result.add("idle dropped, hostile mix", "count", mix["idle_dropped"])
    progress(
        f"run {run}/{runs}: "
        + ", ".join(
            f"{name} {f['joins_per_s']:.0f} joins/s p99 {f['relay']['p99_ms']:.2f} ms "
            f"{f['relay']['relayed_per_server_cpu_s']:.0f}/CPU-s"
            for name, f in figures.items()
        )
        + f"; hostile mix p99 {mix['p99_ms']:.1f} ms, +{mix['rss_growth_kib']} KiB, "
        f"{mix['non_reading_dropped']} non-readers dropped"
    )


def _headline(result: BenchResult, *, with_redis: bool) -> None:
    median = result.median
    result.headline["relay_throughput_ratio_to_ywebrtc"] = median(
        "relayed per server CPU-s, crdtsync"
    ) / median("relayed per server CPU-s, y-webrtc server")
    result.headline["p99_relay_ms_crdtsync"] = median("relay p99, crdtsync")
    result.headline["p99_relay_ms_ywebrtc"] = median("relay p99, y-webrtc server")
    result.headline["rss_per_connection_kib"] = median("server RSS per connection, crdtsync")
    result.headline["rss_growth_with_hostile_mix_kib"] = median("server RSS growth, hostile mix")
    if with_redis:
        for suffix, name in (("", "crdtsync"), ("_native", "crdtsync native")):
            result.headline[f"p50_relay_ratio_with_redis{suffix}"] = median(
                f"relay p50, {name} + Redis"
            ) / median(f"relay p50, {name}")
