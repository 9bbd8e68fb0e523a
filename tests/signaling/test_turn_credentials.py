"""Ephemeral TURN credentials: coturn's use-auth-secret scheme, and the server handing them
to each peer once it proved its identity (coturn accepting them: test_turn_relays.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import msgpack
import pytest
from test_router import Harness

from crdtsync.cli import main
from crdtsync.errors import ConfigError, ProtocolError
from crdtsync.protocol.signaling import (
    TurnCredentials,
    Welcome,
    decode_signaling,
    encode_signaling,
)
from crdtsync.signaling.client import SignalingClient
from crdtsync.signaling.server import SignalingServer
from crdtsync.signaling.turn import TurnSettings, expires_at, turn_password

TIMEOUT = 10.0
URL = "turn:127.0.0.1:3478?transport=udp"


def test_credentials_follow_coturns_rest_scheme() -> None:
    settings = TurnSettings([URL], "s3cret", ttl=600)
    credentials = settings.credentials("peer-1", now=1_700_000_000.4)
    assert credentials.urls == (URL,)
    assert credentials.username == "1700000600:peer-1"  # expiry (Unix seconds), then the id
    digest = hmac.new(b"s3cret", b"1700000600:peer-1", hashlib.sha1).digest()
    assert credentials.credential == base64.b64encode(digest).decode()
    assert turn_password("s3cret", credentials.username) == credentials.credential


@pytest.mark.parametrize(
    ("urls", "secret", "ttl", "message"),
    [
        ([], "s", 60.0, "1 to 8 TURN URLs"),
        (["stun:127.0.0.1:3478"], "s", 60.0, "must start with turn:"),
        ([URL], "", 60.0, "must not be empty"),
        ([URL], "s", 0.0, "must be positive"),
        ([URL] * 9, "s", 60.0, "1 to 8 TURN URLs"),
    ],
)
def test_settings_refuse_what_cannot_work(
    urls: list[str], secret: str, ttl: float, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        TurnSettings(urls, secret, ttl)


@pytest.mark.parametrize(
    ("username", "expiry"),
    [("1700000600:peer-1", 1700000600.0), ("alice", None), (":p", None), ("x1:p", None)],
)
def test_the_expiry_is_read_from_the_username(username: str, expiry: float | None) -> None:
    assert expires_at(username) == expiry


def test_a_single_url_string_is_one_url() -> None:
    assert TurnSettings(URL, "s").urls == (URL,)


def test_welcome_carries_credentials_or_none() -> None:
    turn = TurnCredentials((URL, "turn:127.0.0.1:3478?transport=tcp"), "1:p", "pw")
    for message in (Welcome("p", turn=turn), Welcome("p")):
        assert decode_signaling(encode_signaling(message), max_size=65536) == message


@pytest.mark.parametrize(
    "turn",
    [
        "not a map",
        {"urls": [], "user": "u", "cred": "c"},
        {"urls": [URL], "user": "", "cred": "c"},
        {"urls": [URL], "user": "u"},
        {"urls": [1], "user": "u", "cred": "c"},
    ],
)
def test_malformed_credentials_are_a_protocol_error(turn: object) -> None:
    data = msgpack.packb({"t": "welcome", "v": 2, "id": "p", "turn": turn})
    with pytest.raises(ProtocolError, match="turn"):
        decode_signaling(data, max_size=65536)


def test_the_router_issues_them_with_the_welcome_by_its_wall_clock() -> None:
    h = Harness(wall=1_700_000_000.0)
    h.router.turn = TurnSettings([URL], "s3cret", ttl=600)
    conn = h.connect()
    peer_id = h.ids[conn]
    (welcome,) = h.inbox()[conn]
    username = f"1700000600:{peer_id}"
    assert welcome == Welcome(
        peer_id, turn=TurnCredentials((URL,), username, turn_password("s3cret", username))
    )


class _Quiet:
    def members_changed(self, room: str, members: frozenset[str]) -> None:
        pass

    def signal_received(self, room: str, peer_id: str, data: bytes) -> None:
        pass


async def test_the_server_hands_each_proven_peer_its_own_credentials() -> None:
    settings = TurnSettings([URL], "s3cret", ttl=3600)
    async with SignalingServer(port=0, turn=settings) as server:
        clients = [SignalingClient(server.url, _Quiet(), rooms={"r": None}) for _ in range(2)]
        try:
            for client in clients:
                await client.start()
                await client.wait_joined("r", TIMEOUT)
            for client in clients:
                credentials = client.turn_credentials
                assert credentials is not None
                expiry, peer_id = credentials.username.split(":", 1)
                assert peer_id == client.peer_id  # bound to the identity it proved
                assert credentials.credential == turn_password("s3cret", credentials.username)
                assert abs(int(expiry) - (time.time() + 3600)) < 60  # valid for the ttl
        finally:
            for client in clients:
                await client.aclose()


async def test_without_turn_settings_the_server_hands_out_nothing() -> None:
    async with SignalingServer(port=0) as server:
        client = SignalingClient(server.url, _Quiet(), rooms={"r": None})
        try:
            await client.start()
            await client.wait_joined("r", TIMEOUT)
            assert client.turn_credentials is None
        finally:
            await client.aclose()


def test_the_command_line_wants_url_and_secret_together(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["signal", "--port", "0", "--turn-url", URL]) == 1
    assert "--turn-url and --turn-secret go together" in capsys.readouterr().err
