"""The command line, run as a user would: separate processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pycrdt
from websockets.asyncio.client import connect

from crdtsync import Peer, SignalingServer
from crdtsync.protocol.signaling import (
    Challenge,
    Hello,
    Prove,
    Welcome,
    decode_signaling,
    encode_signaling,
)
from crdtsync.signaling.identity import Identity, normalise_origin

TIMEOUT = 60
SIGNAL = [sys.executable, "-m", "crdtsync.cli", "signal", "--port", "0"]


def test_demo_replays_the_bundled_trace_and_checks_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crdtsync.cli", "demo", "--peers", "3"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "checksum against the trace's end content: OK" in result.stdout
    assert "3 peers linked over WebRTC" in result.stdout
    assert "26078/26078 edits, 3/3 replicas at the end state" in result.stdout


def test_demo_refuses_bad_options_clearly() -> None:
    for args, message in (
        (["--peers", "0"], "needs --peers >= 1"),
        (["--trace", "no-such-trace"], "no bundled trace 'no-such-trace'"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "crdtsync.cli", "demo", *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 1
        assert message in result.stderr


def test_signal_serves_until_interrupted() -> None:
    with subprocess.Popen(
        SIGNAL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # the server prints its URL once listening
            url = line.split()[3]
            assert url.startswith("ws://127.0.0.1:")

            async def greet() -> object:
                identity = Identity()
                async with connect(url, compression=None, open_timeout=10) as ws:
                    await ws.send(encode_signaling(Hello(identity.public_key)))
                    challenge = decode_signaling(
                        await asyncio.wait_for(ws.recv(), 10), max_size=1 << 16
                    )
                    assert isinstance(challenge, Challenge)
                    await ws.send(
                        encode_signaling(
                            Prove(identity.prove(normalise_origin(url), challenge.nonce))
                        )
                    )
                    data = await asyncio.wait_for(ws.recv(), 10)
                    assert isinstance(data, bytes)
                    return decode_signaling(data, max_size=1 << 16)

            assert isinstance(asyncio.run(greet()), Welcome)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=TIMEOUT) == 130
            assert process.stderr is not None
            assert "connected" in process.stderr.read()  # the structured log of the join
        finally:
            if process.poll() is None:
                process.kill()  # never leave a server behind a failed test


def test_signal_serves_wss_with_a_certificate_and_stops_on_sigterm(
    tls_files: tuple[Path, Path],
) -> None:
    certificate, key = tls_files
    command = [*SIGNAL, "--certfile", str(certificate), "--keyfile", str(key)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().split()[3].startswith("wss://127.0.0.1:")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=TIMEOUT) == 0
        finally:
            if process.poll() is None:
                process.kill()


def test_signal_names_a_certificate_it_cannot_load(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    result = subprocess.run(
        [*SIGNAL, "--certfile", str(missing)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 1
    assert f"cannot load certificate {missing}" in result.stderr


async def test_peer_serve_outlives_its_input_and_stops_on_sigterm() -> None:
    """The always-on keeper as a service runs it: no input at all (stdin at its end)."""
    async with SignalingServer("127.0.0.1", 0) as server:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "crdtsync.cli", "peer", "--serve"],
            *["--signaling", server.url, "--room", "kept", "--host-address", "127.0.0.1"],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            async with asyncio.timeout(TIMEOUT):
                ready = json.loads(await process.stdout.readline())
            doc: pycrdt.Doc[Any] = pycrdt.Doc()
            async with Peer(
                doc, room="kept", signaling=server.url, host_addresses=["127.0.0.1"]
            ) as peer:
                await peer.wait_for_peers(1, timeout=TIMEOUT)  # linked, though input ended
                assert peer.peers == {ready["ready"]}
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(TIMEOUT):
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
