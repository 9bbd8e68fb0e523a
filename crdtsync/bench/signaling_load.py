"""The two processes ``crdtsync bench signaling`` starts: our server, and the load on a server.

``python -m crdtsync.bench.signaling_load serve`` runs our ``SignalingServer`` on 127.0.0.1
and prints its URL on the first stdout line. ``... load --url URL --server-pid PID`` is the
simulated clients, in a process of their own (asyncio and websockets): it joins them, paces
their offer-sized signals, optionally mixes in idle and non-reading connections, reads the
server's memory and CPU from ``/proc``, and prints one JSON object that ``signaling.py`` reads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import resource
import signal
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from crdtsync.protocol.signaling import (
    Challenge,
    Hello,
    Join,
    Joined,
    Prove,
    Signal,
    Welcome,
    decode_signaling,
    encode_signaling,
)
from crdtsync.signaling.identity import Identity, normalise_origin
from crdtsync.signaling.limits import SignalingSettings
from crdtsync.signaling.server import SignalingServer

__all__ = ["bench_settings", "cpu_seconds", "main", "raise_fd_limit", "rss_kib"]

ROOM_SIZE = 8  # the rooms of 8
# An SDP offer or answer with a few candidates: ~1.5 KB on the wire.
PAYLOAD = 1400
TIMEOUT = 30.0  # for a handshake, a join, a pong: a loaded loopback answers in well under 1 s
# Concurrent handshakes: enough to join thousands in a second or two, few enough that the
# listening socket's backlog (asyncio's 100) never overflows into SYN retries.
HANDSHAKES = 64
# A non-reading connection's receive buffer: the kernel's smallest, so it fills at once.
SMALL_RCVBUF = 4096
KEEPALIVE = 15.0  # idle connections ping as clients do (y-webrtc: lib0 websocket, 15 s too)
# A busy room: 4 talkers and 4 non-readers, a room of 8. Each talker sends 48 KiB broadcasts,
# 8 at once (within the default 1 MiB byte burst) then 5/s (the default 256 KiB/s byte rate): on
# loopback the kernel buffers ~2.6 MB per socket (a 64 KiB MSS), and a non-reader is dropped
# only once those are full and a send then waits ``send_timeout`` (10 s); a 1.5 KB signal a
# second would take minutes to get there.
BUSY_ROOM_TALKERS = 4
BUSY_ROOM_READERS = ROOM_SIZE - BUSY_ROOM_TALKERS
BROADCAST = 48 * 1024
TALKER_BURST = 8
TALKER_RATE = 5.0
_TCP_ESTABLISHED = 1  # tcpi_state in struct tcp_info (linux/tcp.h)


def raise_fd_limit() -> None:
    """RLIMIT_NOFILE up to its hard limit: thousands of sockets each side."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid: int) -> int:
    """A process's resident set (``VmRSS`` in ``/proc/PID/status``), in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU a process used so far (user + system, ``/proc/PID/stat``), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name may hold spaces and parentheses: fields count from its last ')'.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


_CLOCK_TICKS = 100  # replaced at import on Linux
with contextlib.suppress(AttributeError, ValueError, OSError):
    import os

    _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def bench_settings(max_connections: int) -> SignalingSettings:
    """Our defaults but the connection caps.

    Every simulated client connects from 127.0.0.1, and the default caps admit 64 connections
    per address (a household behind one NAT) and 4,096 overall: the benchmark's thousands
    from one address would be refused with HTTP 503. Both are raised to ``max_connections``;
    rooms hold 8, under the default 32 joins per room per address, so that cap stays, as do
    the rates, queues and timeouts the benchmark measures.
    """
    return SignalingSettings(
        max_connections=max_connections, max_connections_per_address=max_connections
    )


async def serve(host: str, port: int, max_connections: int, redis: str | None = None) -> None:
    """Our server (sharing rooms through ``redis`` if given) until SIGTERM or SIGINT; its URL
    first on stdout."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    settings = bench_settings(max_connections)
    async with SignalingServer(host, port, settings=settings, redis=redis) as server:
        print(server.url, flush=True)
        await stopped.wait()


# -- the two dialects -------------------------------------------------------------------------


class _Dialect(Protocol):
    """How a simulated client logs in, joins, signals one room member and reads a signal."""

    async def join(self, url: str, room: str, me: str) -> ClientConnection: ...
    def signal(self, stamp: float) -> str | bytes: ...
    def stamp_of(self, frame: str | bytes) -> float | None:
        """The send stamp of a signal to this client; None for any other frame."""
        ...


def _padding(size: int) -> str:
    return "x" * size


async def _open(url: str, **kwargs: Any) -> ClientConnection:
    return await connect(
        url,
        compression=None,
        ping_interval=None,  # the protocols' own pings, as real clients
        open_timeout=TIMEOUT,
        max_size=None,
        **kwargs,
    )


async def _until(ws: ClientConnection, done: Callable[[str | bytes], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not done(await ws.recv()):
            pass


class _YWebrtc:
    """y-webrtc's JSON: subscribe, announce, ``signal`` publishes with ``to``."""

    def __init__(self) -> None:
        self._frame = ("", "")
        self._mine = ""

    async def join(self, url: str, room: str, me: str, **kwargs: Any) -> ClientConnection:
        ws = await _open(url, **kwargs)
        await ws.send(json.dumps({"type": "subscribe", "topics": [room]}))
        # Our server routes a ``to`` by the ids announced in the topic (as y-webrtc peers do).
        announce = {"type": "announce", "from": me}
        await ws.send(json.dumps({"type": "publish", "topic": room, "data": announce}))
        await ws.send('{"type":"ping"}')
        await _until(ws, lambda frame: frame == '{"type":"pong"}')
        return ws

    def aim(self, room: str, me: str, target: str) -> None:
        head = (
            f'{{"type":"publish","topic":{json.dumps(room)},"data":{{"type":"signal",'
            f'"from":{json.dumps(me)},"to":{json.dumps(target)},"sent":'
        )
        tail = f',"signal":{{"type":"offer","sdp":"{_padding(PAYLOAD)}"}}}}}}'
        self._frame = (head, tail)
        self._mine = f'"to":{json.dumps(me)}'

    def signal(self, stamp: float) -> str:
        return f"{self._frame[0]}{stamp!r}{self._frame[1]}"

    def stamp_of(self, frame: str | bytes) -> float | None:
        if not isinstance(frame, str) or self._mine not in frame:
            return None
        data = json.loads(frame).get("data")
        sent = data.get("sent") if isinstance(data, dict) else None
        return float(sent) if isinstance(sent, int | float) else None


class _Native:
    """Our msgpack protocol: hello, prove, join, ``Signal`` to one peer id."""

    def __init__(self) -> None:
        self.peer_id = ""
        self._room = ""
        self._target = ""
        self._pad = b"x" * PAYLOAD

    async def join(self, url: str, room: str, me: str, **kwargs: Any) -> ClientConnection:
        identity = Identity()
        ws = await _open(url, **kwargs)
        await ws.send(encode_signaling(Hello(identity.public_key)))
        async with asyncio.timeout(TIMEOUT):
            challenge = decode_signaling(_binary(await ws.recv()), max_size=1 << 20)
            if not isinstance(challenge, Challenge):
                raise ValueError(f"expected a challenge, got {type(challenge).__name__}")
            proof = identity.prove(normalise_origin(url), challenge.nonce)
            await ws.send(encode_signaling(Prove(proof)))
            welcome = decode_signaling(_binary(await ws.recv()), max_size=1 << 20)
            if not isinstance(welcome, Welcome):
                raise ValueError(f"expected welcome, got {type(welcome).__name__}")
            self.peer_id = welcome.peer_id
            await ws.send(encode_signaling(Join(room)))
            while not isinstance(
                decode_signaling(_binary(await ws.recv()), max_size=1 << 20), Joined
            ):
                pass
        return ws

    def aim(self, room: str, me: str, target: str) -> None:
        self._room, self._target = room, target

    def signal(self, stamp: float) -> bytes:
        return encode_signaling(
            Signal(self._room, self._target, struct.pack("!d", stamp) + self._pad)
        )

    def stamp_of(self, frame: str | bytes) -> float | None:
        if not isinstance(frame, bytes):
            return None
        message = decode_signaling(frame, max_size=1 << 20)
        if not isinstance(message, Signal) or len(message.data) < 8:
            return None
        stamp: float = struct.unpack("!d", message.data[:8])[0]
        return stamp


def _binary(frame: str | bytes) -> bytes:
    if not isinstance(frame, bytes):
        raise ValueError("a text frame on the native protocol")
    return frame


# -- the clients ------------------------------------------------------------------------------


@dataclass
class _Client:
    """One simulated peer: its connection, and (send stamp, ms) of each signal it got."""

    index: int
    room: str
    dialect: _YWebrtc | _Native
    ws: ClientConnection | None = None
    received: list[tuple[float, float]] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    others: int = 0  # frames not for it: y-webrtc's server sends every publish to the topic
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"c{self.index}"

    async def read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for frame in self.ws:
                now = time.time()
                stamp = self.dialect.stamp_of(frame)
                if stamp is not None:
                    self.received.append((stamp, (now - stamp) * 1000))
                elif isinstance(frame, str) and '"type":"error"' in frame:
                    code = str(json.loads(frame).get("code"))
                    self.errors[code] = self.errors.get(code, 0) + 1
                else:
                    self.others += 1

    async def talk(self, rate: float, start: float) -> None:
        """Signals at ``rate`` per second from ``start`` (phase-shifted), until cancelled."""
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        period = 1.0 / rate
        at = start + period * ((self.index * 0.618034) % 1.0)  # spread evenly over a period
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(max(0.0, at - loop.time()))
                stamp = time.time()
                self.sent.append(stamp)
                await self.ws.send(self.dialect.signal(stamp))
                at += period


async def _bounded(jobs: list[Callable[[], Awaitable[None]]], limit: int) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            await job()

    async with asyncio.TaskGroup() as group:
        for job in jobs:
            group.create_task(one(job))


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


@dataclass
class _Window:
    """One measured stretch: wall-clock bounds, and the server's CPU and memory over it."""

    start: float
    stop: float = 0.0
    cpu: float = 0.0
    load_cpu: float = 0.0
    rss_kib: int = 0
    rss_peak_kib: int = 0

    def figures(self, clients: list[_Client]) -> dict[str, float]:
        sent = sum(1 for c in clients for stamp in c.sent if self.start <= stamp < self.stop)
        latencies = [
            ms for c in clients for stamp, ms in c.received if self.start <= stamp < self.stop
        ]
        seconds = self.stop - self.start
        return {
            "seconds": seconds,
            "sent": sent,
            "relayed": len(latencies),
            "relayed_per_s": len(latencies) / seconds,
            "server_cpu_s": self.cpu,
            "relayed_per_server_cpu_s": len(latencies) / self.cpu if self.cpu > 0 else math.nan,
            "load_cpu_share": self.load_cpu / seconds,
            "p50_ms": _percentile(latencies, 0.50),
            "p99_ms": _percentile(latencies, 0.99),
            "rss_kib": self.rss_kib,
            "rss_peak_kib": self.rss_peak_kib,
        }


async def _measure(pid: int, seconds: float, interval: float = 0.25) -> _Window:
    """Sample the server for ``seconds``: CPU used, RSS at the end and at its highest."""
    window = _Window(time.time())
    cpu, load_cpu = cpu_seconds(pid), time.process_time()
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        await asyncio.sleep(min(interval, left))
        window.rss_peak_kib = max(window.rss_peak_kib, rss_kib(pid))
    window.stop = time.time()
    window.cpu = cpu_seconds(pid) - cpu
    window.load_cpu = time.process_time() - load_cpu
    window.rss_kib = rss_kib(pid)
    window.rss_peak_kib = max(window.rss_peak_kib, window.rss_kib)
    return window


async def _non_reader(url: str, room: str) -> ClientConnection:
    """A subscriber to ``room`` that stops reading once subscribed (tiny receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    sock.setblocking(False)
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    # max_queue=1: websockets stops reading the socket once one frame waits, as we never ask.
    ws = await _open(url, sock=sock, max_queue=1)
    await ws.send(json.dumps({"type": "subscribe", "topics": [room]}))
    await ws.send('{"type":"ping"}')
    await _until(ws, lambda frame: frame == '{"type":"pong"}')
    return ws


def _established(ws: ClientConnection) -> bool:
    """Whether the kernel still holds the TCP connection open (the server has not dropped it:
    a connection that does not read never sees the close itself)."""
    sock = ws.transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return False
    return bool(info[0] == _TCP_ESTABLISHED)


async def _keepalive(ws: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.sleep(KEEPALIVE)
            await ws.send('{"type":"ping"}')


async def _drain(ws: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def load(args: argparse.Namespace) -> dict[str, Any]:
    """The whole load: join, relay, then (if asked) the hostile mix; the figures."""
    native = args.dialect == "native"
    pid: int = args.server_pid
    rss_idle = rss_kib(pid)
    clients = [
        _Client(i, f"room-{i // ROOM_SIZE}", _Native() if native else _YWebrtc())
        for i in range(args.clients)
    ]
    tasks: list[asyncio.Task[None]] = []
    opened: list[ClientConnection] = []
    result: dict[str, Any] = {"dialect": args.dialect, "clients": args.clients}
    try:
        began = time.perf_counter()

        async def join(client: _Client) -> None:
            client.ws = await client.dialect.join(args.url, client.room, client.name)
            opened.append(client.ws)

        await _bounded([functools.partial(join, c) for c in clients], HANDSHAKES)
        result["join_seconds"] = time.perf_counter() - began
        result["joins_per_s"] = args.clients / result["join_seconds"]
        for client in clients:  # each signals the next member of its room
            base = client.index - client.index % ROOM_SIZE
            size = min(ROOM_SIZE, args.clients - base)
            peer = clients[base + (client.index - base + 1) % size]
            target = peer.dialect.peer_id if isinstance(peer.dialect, _Native) else peer.name
            client.dialect.aim(client.room, client.name, target)
            tasks.append(asyncio.create_task(client.read()))
        loop = asyncio.get_running_loop()
        start = loop.time()
        talking = [asyncio.create_task(c.talk(args.rate, start)) for c in clients]
        tasks.extend(talking)
        await asyncio.sleep(args.warmup)
        relay = await _measure(pid, args.seconds)
        result["rss_idle_kib"] = rss_idle
        result["rss_per_connection_kib"] = (relay.rss_kib - rss_idle) / args.clients
        hostile: tuple[_Window, dict[str, Any]] | None = None
        if args.hostile:
            hostile = await _hostile(args, pid, clients, tasks, opened)
        for task in talking:
            task.cancel()
        await asyncio.sleep(1.0)  # the last signals' way back, the slowest included
        result["relay"] = relay.figures(clients)
        if hostile is not None:
            result["hostile"] = {**hostile[0].figures(clients), **hostile[1]}
        result["undelivered"] = result["relay"]["sent"] - result["relay"]["relayed"]
        result["frames_to_others"] = sum(c.others for c in clients)
        result["errors"] = _merged(c.errors for c in clients)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(_abort(ws) for ws in opened), return_exceptions=True)
    return result


async def _hostile(
    args: argparse.Namespace,
    pid: int,
    clients: list[_Client],
    tasks: list[asyncio.Task[None]],
    opened: list[ClientConnection],
) -> tuple[_Window, dict[str, Any]]:
    """Idle connections in rooms of their own, and non-readers in busy rooms, while the
    clients keep signaling: the server's memory, the non-readers dropped, the latency."""
    rss_before = rss_kib(pid)
    idle: list[ClientConnection] = []
    non_readers: list[ClientConnection] = []
    talkers: list[tuple[str, ClientConnection]] = []
    rooms = math.ceil(args.non_reading / BUSY_ROOM_READERS)

    async def open_idle(index: int) -> None:
        ws = await _YWebrtc().join(args.url, f"idle-{index}", f"idle-{index}")
        idle.append(ws)
        opened.append(ws)
        tasks.append(asyncio.create_task(_keepalive(ws)))
        tasks.append(asyncio.create_task(_drain(ws)))

    async def open_non_reader(index: int) -> None:
        ws = await _non_reader(args.url, f"busy-{index % rooms}")
        non_readers.append(ws)
        opened.append(ws)

    async def open_talker(index: int) -> None:
        room = f"busy-{index % rooms}"
        ws = await _YWebrtc().join(args.url, room, f"talker-{index}")
        talkers.append((room, ws))
        opened.append(ws)
        tasks.append(asyncio.create_task(_drain(ws)))

    began = time.perf_counter()
    await _bounded(
        [
            *(functools.partial(open_idle, i) for i in range(args.idle)),
            *(functools.partial(open_non_reader, i) for i in range(args.non_reading)),
            *(functools.partial(open_talker, i) for i in range(rooms * BUSY_ROOM_TALKERS)),
        ],
        HANDSHAKES,
    )
    opened_in = time.perf_counter() - began
    # Encrypted y-webrtc rooms publish base64 strings: the server sends them to the topic.
    broadcast = "A" * BROADCAST
    tasks.extend(asyncio.create_task(_broadcast(ws, room, broadcast)) for room, ws in talkers)
    window = await _measure(pid, args.hostile_seconds)
    return window, {
        "idle": args.idle,
        "non_reading": args.non_reading,
        "busy_rooms": rooms,
        "opened_seconds": opened_in,
        "rss_before_kib": rss_before,
        "rss_growth_kib": window.rss_peak_kib - rss_before,
        "non_reading_dropped": sum(not _established(ws) for ws in non_readers),
        "idle_dropped": sum(not _established(ws) for ws in idle),
    }


async def _broadcast(ws: ClientConnection, room: str, data: str) -> None:
    frame = json.dumps({"type": "publish", "topic": room, "data": data})
    with contextlib.suppress(ConnectionClosed):
        for _ in range(TALKER_BURST):
            await ws.send(frame)
        while True:
            await asyncio.sleep(1.0 / TALKER_RATE)
            await ws.send(frame)


async def _abort(ws: ClientConnection) -> None:
    """Close without waiting on a server busy dropping thousands: the socket, at once."""
    ws.transport.abort()
    with contextlib.suppress(ConnectionClosed, WebSocketException, OSError):
        await ws.wait_closed()


def _merged(counts: Any) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for key, value in count.items():
            merged[key] = merged.get(key, 0) + value
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crdtsync.bench.signaling_load")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("serve", help="our signaling server, caps raised for a load")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=0)
    server.add_argument("--max-connections", type=int, default=16384)
    server.add_argument("--redis", help="share rooms through this Redis (the backplane's cost)")
    client = commands.add_parser("load", help="simulated clients on a server; one JSON line")
    client.add_argument("--url", required=True)
    client.add_argument("--server-pid", type=int, required=True, help="for /proc figures")
    client.add_argument("--dialect", choices=("y-webrtc", "native"), default="y-webrtc")
    client.add_argument("--clients", type=int, default=1000)
    client.add_argument("--rate", type=float, default=1.0, help="signals/s per client")
    client.add_argument("--warmup", type=float, default=0.5)
    client.add_argument("--seconds", type=float, default=2.0, help="measured relay window")
    client.add_argument("--hostile", action="store_true", help="then mix in the next two")
    client.add_argument("--idle", type=int, default=1000)
    client.add_argument("--non-reading", type=int, default=100)
    client.add_argument("--hostile-seconds", type=float, default=13.0)
    args = parser.parse_args(argv)
    raise_fd_limit()
    if args.command == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.host, args.port, args.max_connections, args.redis))
        return 0
    print(json.dumps(asyncio.run(load(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
