"""The Node side of the benchmarks that race real Yjs peers: where node_modules is, and
y-webrtc's own signaling server (``bin/server.js``) as a child process.

``npm ci`` in the repository installs the pinned packages; a benchmark run from the
checkout (or below it) finds them, and so does this package when it runs from the source
tree. Children are stopped with SIGTERM, then SIGKILL after a grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from crdtsync.errors import ConfigError, SyncTimeoutError, TransportError

__all__ = ["ChildServer", "find_node_modules", "stop_process", "ywebrtc_server"]

SERVER_START_TIMEOUT = 10.0  # for bin/server.js to accept connections
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


@dataclass(frozen=True, slots=True)
class ChildServer:
    """A signaling server in a process of its own: where it listens, and its pid."""

    url: str
    pid: int


def find_node_modules(packages: Sequence[str], benchmark: str) -> Path:
    """The folder whose node_modules holds ``packages`` (this directory or one above, or the
    source tree this package runs from); ConfigError, saying what to do, if none."""
    if shutil.which("node") is None:
        raise ConfigError(f"{benchmark} needs Node.js: node is not on PATH")
    for folder in (Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents):
        modules = folder / "node_modules"
        if all((modules / name / "package.json").exists() for name in packages):
            return folder
    raise ConfigError(
        f"{benchmark} needs node_modules with {', '.join(packages)}: "
        "run `npm ci` in the crdtsync repository, and run the benchmark from there"
    )


@contextlib.asynccontextmanager
async def ywebrtc_server(root: Path) -> AsyncIterator[ChildServer]:
    """y-webrtc's ``bin/server.js`` on a free port, once it accepts. It listens on every
    interface; only clients on 127.0.0.1 connect."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        "node",
        str(root / "node_modules" / "y-webrtc" / "bin" / "server.js"),
        cwd=root,
        env={**os.environ, "PORT": str(port)},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,  # one line saying it runs
    )
    try:
        await _accepting(port, process)
        yield ChildServer(f"ws://127.0.0.1:{port}", process.pid)
    finally:
        await stop_process(process)


async def _accepting(port: int, process: asyncio.subprocess.Process) -> None:
    try:
        async with asyncio.timeout(SERVER_START_TIMEOUT):
            while True:
                if process.returncode is not None:
                    raise TransportError(f"y-webrtc server exited with {process.returncode}")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except ConnectionRefusedError:
                    await asyncio.sleep(0.02)  # a poll of another process's socket
                    continue
                writer.close()
                await writer.wait_closed()
                return
    except TimeoutError as exc:
        raise SyncTimeoutError(
            f"y-webrtc server not accepting on port {port} within {SERVER_START_TIMEOUT} s"
        ) from exc


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, and SIGKILL if the process is still there after ``STOP_GRACE``."""
    if process.returncode is None:
        process.terminate()
    try:
        async with asyncio.timeout(STOP_GRACE):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
