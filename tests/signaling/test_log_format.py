"""``--log-format json``: one JSON object per line, with the event, room, peer and code."""

from __future__ import annotations

import asyncio
import json
import logging
import signal

import pytest
from probes import TIMEOUT, start_signal
from test_server import hello, receive, send

from crdtsync.protocol.signaling import Error, Join, Joined
from crdtsync.signaling.log_format import JsonFormatter, log_fields
from crdtsync.signaling.server import SignalingServer


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("crdtsync.signaling", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_record_is_one_json_object_with_its_fields() -> None:
    line = JsonFormatter().format(
        record(
            "= %s joined %s",
            "peer-a",
            "'notes'",
            **log_fields("joined", room="notes", peer="peer-a"),
        )
    )
    parsed = json.loads(line)
    assert parsed["event"] == "joined"
    assert (parsed["room"], parsed["peer"], parsed["level"]) == ("notes", "peer-a", "INFO")
    assert parsed["message"] == "= peer-a joined 'notes'"
    assert "code" not in parsed  # not known: left out, not null
    assert parsed["time"].endswith("+00:00")


def test_remote_input_stays_on_one_short_line() -> None:
    room = 'a"\n}{"event": "forged"\r\n' + "x" * 10_000
    line = JsonFormatter().format(record("= joined", **log_fields("joined", room=room, code=1008)))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["event"] == "joined"
    assert parsed["room"].startswith('a"\n}{')
    assert len(parsed["room"]) == 100
    assert parsed["code"] == 1008


async def test_the_server_logs_joins_and_refusals_with_their_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="crdtsync.signaling")
    async with SignalingServer() as server:
        alice, alice_id = await hello(server.url)
        await send(alice, Join("notes"))
        assert isinstance(await receive(alice), Joined)
        await send(alice, Join("notes"))
        assert isinstance(await receive(alice), Error)
        await alice.close()
    fields = [
        {name: getattr(r, name, None) for name in ("event", "room", "peer", "code")}
        for r in caplog.records
    ]
    assert {"event": "joined", "room": "notes", "peer": alice_id, "code": None} in fields
    assert {"event": "refused", "room": None, "peer": alice_id, "code": "already-joined"} in fields


async def test_crdtsync_signal_writes_json_lines() -> None:
    process, url = await start_signal("--log-format", "json")
    try:
        alice, alice_id = await hello(url)
        await send(alice, Join("notes"))
        assert isinstance(await receive(alice), Joined)
        await alice.close()
        process.send_signal(signal.SIGTERM)
        assert process.stderr is not None
        output = await asyncio.wait_for(process.stderr.read(), TIMEOUT)
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    finally:
        if process.returncode is None:
            process.kill()  # never leave a server behind a failed test
            await process.wait()
    lines = [json.loads(line) for line in output.decode().splitlines()]
    events = [line.get("event") for line in lines]
    assert events.index("listening") < events.index("joined") < events.index("stopped")
    joined = lines[events.index("joined")]
    assert (joined["room"], joined["peer"]) == ("notes", alice_id)
    assert all(line["level"] in ("INFO", "WARNING") for line in lines)
