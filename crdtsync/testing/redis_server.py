"""A real ``redis-server`` for tests and benchmarks: a free port of 127.0.0.1, nothing saved.

Servers sharing rooms (``SignalingServer(redis=...)``) are tested and measured against the
real thing; ``kill()`` and ``restart()`` make the outages the backplane must survive.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile

from crdtsync.errors import ConfigError

__all__ = ["RedisServer"]

START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``server = await RedisServer.start()``; ``kill()`` and ``restart()`` mid-test."""

    def __init__(self, program: str, port: int) -> None:
        self.program = program
        self.port = port
        self._directory = tempfile.TemporaryDirectory(prefix="crdtsync-redis-")
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    async def start(cls) -> RedisServer:
        """A new server; ConfigError when ``redis-server`` is not installed."""
        program = shutil.which("redis-server")
        if program is None:
            raise ConfigError("redis-server is not installed: apt-get install -y redis-server")
        server = cls(program, _free_port())
        await server.restart()
        return server

    async def restart(self) -> None:
        """Start it (again, on the same port, empty: nothing was saved)."""
        self.process = await asyncio.create_subprocess_exec(
            self.program,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._directory.name,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert self.process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            while b"Ready to accept connections" not in await self.process.stdout.readline():
                if self.process.stdout.at_eof():
                    raise ConfigError(f"redis-server did not start on port {self.port}")
        # Not read any further: without saving it logs only at shutdown, far below a pipe's fill.

    async def kill(self) -> None:
        """SIGKILL: no goodbye to its clients."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> None:
        """Kill it and remove its directory."""
        await self.kill()
        self._directory.cleanup()
