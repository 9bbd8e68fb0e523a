"""Peer processes and signaling servers as children: started, driven, killed, awaited.

``crdtsync chaos``, the network-fault tests and ``crdtsync bench network`` run real
processes (``crdtsync peer`` driven by JSON lines, ``crdtsync signal``), optionally inside
a network namespace (``prefix``: e.g. ``FaultyNetwork.command([])``). Every wait has a
timeout and raises ``SyncTimeoutError`` saying what did not come.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from crdtsync.errors import CrdtSyncError, SyncTimeoutError

__all__ = ["CLI", "PeerProcess", "ProcessError", "SignalProcess"]

CLI = (sys.executable, "-m", "crdtsync.cli")
REPORT_LIMIT = 64 << 20  # one output line: a report holds the whole text
DEFAULT_TIMEOUT = 30.0  # seconds for one step (start, a flush, a report)
POLL_INTERVAL = 0.05  # seconds between reports when waiting on another process's state


class ProcessError(CrdtSyncError):
    """A child process exited, or said something we cannot read."""


class PeerProcess:
    """A ``crdtsync peer`` child: send it commands, read its JSON events."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.id = ""
        self.peers: frozenset[str] = frozenset()

    @classmethod
    async def start(
        cls,
        url: str,
        *,
        room: str,
        store: Path | None = None,
        prefix: Sequence[str] = (),
        name: str = "peer",
        serve: bool = False,
        log: Path | None = None,
        verbose: bool = False,
        options: Sequence[str] = (),
        host_address: str | None = "127.0.0.1",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> PeerProcess:
        """Start a peer in ``room`` and wait until it has joined; with ``log``, its log
        (warnings, or everything if ``verbose``) is appended to that file; ``options`` are
        more ``crdtsync peer`` flags (``--dialect``, another ``--signaling``, ...);
        ``host_address`` None gathers every address of its network namespace."""
        flags = ("-v",) if verbose else ()
        args = [*prefix, *CLI, *flags, "peer", "--signaling", url, "--room", room]
        if host_address is not None:
            args += ["--host-address", host_address]
        if store is not None:
            args += ["--store", str(store)]
        if serve:
            args.append("--serve")
        args += options
        with contextlib.ExitStack() as files:
            stderr = (
                asyncio.subprocess.DEVNULL if log is None else files.enter_context(log.open("a"))
            )
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                limit=REPORT_LIMIT,
            )
        peer = cls(process, name)
        try:
            peer.id = str((await peer.next_event("ready", timeout))["ready"])
        except BaseException:
            await peer.kill()
            raise
        return peer

    def __repr__(self) -> str:
        return f"<PeerProcess {self.name} {self.id[:8]}>"

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def next_event(self, key: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The next output line that has ``key`` (``peers`` lines update ``self.peers``)."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self.process.stdout.readline()
                    if not line:
                        raise ProcessError(f"{self!r} exited before saying {key!r}")
                    try:
                        event = json.loads(line)
                    except ValueError as exc:
                        raise ProcessError(f"{self!r} wrote {line[:80]!r}") from exc
                    if "peers" in event:
                        self.peers = frozenset(event["peers"])
                    if key in event:
                        return dict(event)
        except TimeoutError as exc:
            raise SyncTimeoutError(f"{self!r} said no {key!r} within {timeout} s") from exc

    async def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(command) + "\n").encode())
            await self.process.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise ProcessError(f"{self!r} takes no more commands: {exc}") from exc

    async def flush(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Return once every edit sent so far is in the peer's store."""
        await self.send(flush=True)
        await self.next_event("flushed", timeout)

    async def report(
        self, timeout: float = DEFAULT_TIMEOUT, *, docs: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Its state; with ``docs``, ``report["docs"]`` holds the text of each (opened)."""
        await self.send(report=True, docs=list(docs))
        report = (await self.next_event("report", timeout))["report"]
        return dict(report)

    async def text(self, doc_id: str | None = None) -> str:
        """The shared text of ``doc_id`` (of the document ``"default"`` if None)."""
        if doc_id is None:
            return str((await self.report())["text"])
        return str((await self.report(docs=[doc_id]))["docs"][doc_id])

    async def until_report(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        timeout: float,
        what: str,
        docs: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Ask for reports (with the texts of ``docs``) until one satisfies ``predicate``;
        return it."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    report = await self.report(docs=docs)
                    if predicate(report):
                        return report
                    await asyncio.sleep(POLL_INTERVAL)  # a report is a poll of another process
        except TimeoutError as exc:
            raise SyncTimeoutError(f"{self!r}: not {what} within {timeout} s") from exc

    async def until_peers(
        self, predicate: Callable[[frozenset[str]], bool], *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """Until the peers it is linked with satisfy ``predicate`` (it says each change)."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self.peers):
                    await self.next_event("peers", timeout)
        except TimeoutError as exc:
            raise SyncTimeoutError(f"{self!r}: linked with {sorted(self.peers)}") from exc

    async def until_text(self, words: set[str], *, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Until its text holds every one of ``words``; the text."""
        report = await self.until_report(
            lambda report: words <= set(report["text"].split()), timeout=timeout, what="typed"
        )
        return str(report["text"])

    async def kill(self) -> None:
        """SIGKILL, and wait for the exit."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def quit(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Leave the room cleanly (SIGKILL if it does not exit within ``timeout``)."""
        if self.alive:
            with contextlib.suppress(ProcessError):
                await self.send(quit=True)
            try:
                async with asyncio.timeout(timeout):
                    await self.process.wait()
            except TimeoutError:
                await self.kill()


class SignalProcess:
    """A ``crdtsync signal`` child on 127.0.0.1."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @classmethod
    async def start(
        cls,
        port: int = 0,
        *,
        options: Sequence[str] = (),
        prefix: Sequence[str] = (),
        stderr: int = asyncio.subprocess.DEVNULL,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> SignalProcess:
        """Start a server on ``port`` (0: any free one) with ``crdtsync signal`` ``options``
        (``--redis URL``, ...), and wait until it listens; ``stderr=PIPE`` keeps its log."""
        process = await asyncio.create_subprocess_exec(
            *prefix,
            *CLI,
            "signal",
            "--port",
            str(port),
            *options,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = (await process.stdout.readline()).decode()
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            raise SyncTimeoutError(f"signaling server not listening within {timeout} s") from exc
        words = line.split()
        if len(words) < 4 or not words[3].startswith("ws://"):
            await process.wait()
            raise ProcessError(f"signaling server did not start: {line.strip()!r}")
        return cls(process, words[3])

    async def kill(self, how: signal.Signals = signal.SIGKILL) -> None:
        """SIGKILL (or ``how``: SIGTERM drains), and wait for the exit."""
        if self.process.returncode is None:
            self.process.send_signal(how)
        await self.process.wait()
