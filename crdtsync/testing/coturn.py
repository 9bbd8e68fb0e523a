"""A coturn TURN server for tests and benchmarks, started on a free loopback port.

``async with Coturn.start(users={"alice": "pw"}) as turn`` runs Debian's ``turnserver`` with
long-term credentials; ``Coturn.start(secret="s")`` runs it with ``use-auth-secret`` (coturn's
REST scheme, the one ``signaling/turn.py`` issues credentials for). It relays between loopback
peers (``--allow-loopback-peers``), speaks plain UDP and TCP only, and is stopped and reaped
on exit. ``turn.url`` is the ``turn:`` URL to give peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from crdtsync.errors import ConfigError

__all__ = ["REALM", "Coturn", "free_port", "turnserver_binary"]

REALM = "crdtsync"
START_TIMEOUT = 10.0  # seconds for coturn to listen; it takes ~50 ms here
STOP_TIMEOUT = 5.0  # seconds after SIGTERM before SIGKILL


def turnserver_binary() -> str:
    """The path of coturn's ``turnserver``; ConfigError (one line) when it is missing."""
    path = shutil.which("turnserver")
    if path is None:
        raise ConfigError("coturn missing: apt-get install -y coturn")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` (TURN listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port


@dataclass
class Coturn:
    """A running ``turnserver``; see the module docstring."""

    host: str
    port: int
    process: asyncio.subprocess.Process
    log: Path

    @property
    def url(self) -> str:
        return self.url_over("udp")

    def url_over(self, transport: str) -> str:
        """The ``turn:`` URL that reaches this server over ``transport`` (udp or tcp)."""
        return f"turn:{self.host}:{self.port}?transport={transport}"

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        *,
        users: Mapping[str, str] | None = None,
        secret: str | None = None,
        host: str = "127.0.0.1",
        log_dir: Path | None = None,
        command_prefix: Sequence[str] = (),
    ) -> AsyncIterator[Coturn]:
        """Run coturn until the block ends: long-term ``users`` or a REST ``secret``.

        ``command_prefix`` runs it elsewhere (``("ip", "netns", "exec", NAME)``)."""
        if (users is None) == (secret is None):
            raise ConfigError("give coturn exactly one of users= or secret=")
        binary = turnserver_binary()
        port = free_port(host) if not command_prefix else 3478
        log = (log_dir or Path("/tmp")) / f"coturn-{host}-{port}.log"
        args = [
            *command_prefix,
            binary,
            "-n",  # no configuration file: everything is here
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--allow-loopback-peers",
            "--listening-ip",
            host,
            "--relay-ip",
            host,
            "--external-ip",
            host,
            "--listening-port",
            str(port),
            "--realm",
            REALM,
            "--log-file",
            str(log),
            "--simple-log",
            "--no-stdout-log",
            "--pidfile",
            str(log.with_suffix(".pid")),
        ]
        if secret is not None:
            args += ["--use-auth-secret", "--static-auth-secret", secret]
        else:
            assert users is not None
            args.append("--lt-cred-mech")
            for name, password in users.items():
                args += ["--user", f"{name}:{password}"]
        process = await asyncio.create_subprocess_exec(
            *args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        server = cls(host, port, process, log)
        try:
            await server._wait_listening(command_prefix)
            yield server
        finally:
            await server._stop()

    async def _wait_listening(self, command_prefix: Sequence[str]) -> None:
        """Until coturn accepts TCP on its port (it opens UDP first), or it exits."""
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                if self.process.returncode is not None:
                    raise ConfigError(f"turnserver exited: {self._diagnostics()}")
                if command_prefix:
                    # Another namespace: its log says when it listens.
                    if "Total General servers" in self._read_log():
                        return
                else:
                    try:
                        _, writer = await asyncio.open_connection(self.host, self.port)
                    except OSError:
                        pass
                    else:
                        writer.close()
                        return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.02):  # or it exits meanwhile
                        await self.process.wait()

    def _read_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def _diagnostics(self) -> str:
        return self._read_log()[-2000:] or "(no log)"

    async def _stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        for path in (self.log, self.log.with_suffix(".pid")):
            path.unlink(missing_ok=True)
