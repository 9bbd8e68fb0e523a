"""A real ``redis-server`` for tests: on a free port of 127.0.0.1, nothing saved to disk."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path

from needs import require_program

__all__ = ["RedisServer"]

TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``server = await RedisServer.start()``; ``kill()`` and ``restart()`` mid-test."""

    def __init__(self, program: str, port: int, directory: Path) -> None:
        self.program = program
        self.port = port
        self.directory = directory
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    async def start(cls, directory: Path | None = None) -> RedisServer:
        program = require_program("redis-server", "redis-server")
        server = cls(program, free_port(), directory or Path(tempfile.mkdtemp()))
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
            "--dir", str(self.directory),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert self.process.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            while b"Ready to accept connections" not in await self.process.stdout.readline():
                if self.process.returncode is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        # Not read any further: without saving it logs only at shutdown, far below a pipe's fill.

    async def kill(self) -> None:
        """SIGKILL: no goodbye to its clients."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> None:
        await self.kill()
