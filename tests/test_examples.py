"""The examples run as a newcomer would run them, as separate processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from crdtsync.signaling.server import SignalingServer

TIMEOUT = 30.0
EXAMPLES = Path(__file__).parent.parent / "examples"


class ChatProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, url: str, name: str, password: str | None) -> ChatProcess:
        args = [str(EXAMPLES / "chat.py"), "--name", name, "--signaling", url]
        if password is not None:
            args += ["--password", password]
        process = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        return cls(process)

    async def until_line(self, expected: str) -> None:
        assert self.process.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            while (line := (await self.process.stdout.readline()).decode()) != expected + "\n":
                assert line, f"chat exited before printing {expected!r}"

    async def say(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def leave(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # Ctrl-D
        async with asyncio.timeout(TIMEOUT):
            assert await self.process.wait() == 0


@pytest.mark.parametrize("password", [None, "s3cret"])
async def test_two_terminals_chat(password: str | None) -> None:
    async with SignalingServer() as server:
        alice = await ChatProcess.start(server.url, "alice", password)
        bob = await ChatProcess.start(server.url, "bob", password)
        try:
            for chatter in (alice, bob):
                await chatter.until_line("* linked with 1 peer(s)")
            await alice.say("hello bob")
            await bob.until_line("alice: hello bob")
            await bob.say("hi alice")
            await alice.until_line("bob: hi alice")
            await alice.leave()
            await bob.leave()
        finally:
            for chatter in (alice, bob):
                if chatter.process.returncode is None:
                    chatter.process.kill()
                    await chatter.process.wait()


def test_two_editors_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "two_editors.py")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "linked" in result.stdout
