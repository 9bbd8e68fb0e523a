"""The rotation over signaling servers: validation, order, when to back off (no network)."""

from __future__ import annotations

import logging
import random

import pytest
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

from crdtsync.errors import ConfigError
from crdtsync.signaling.servers import STABLE_SESSION, ServerList, retry_delay

A, B, C = "ws://a.example:8765", "ws://b.example:8765", "wss://c.example"
SEED = 7
REFUSED = ConnectionRefusedError(111, "Connection refused")
DRAINING = ConnectionClosedOK(Close(1001, "server shutting down"), None)
DROPPED = ConnectionClosedError(None, None)


def servers(urls: str | list[str], *, tls: bool = False) -> ServerList:
    return ServerList(urls, tls=tls, reconnect_base=0.2, reconnect_cap=1.0, rng=random.Random(SEED))


def test_one_url_as_a_string_or_several_in_order() -> None:
    assert servers(A).urls == (A,)
    rotation = servers([A, B, C])
    assert rotation.urls == (A, B, C)
    assert rotation.origins == ("ws://a.example:8765", "ws://b.example:8765", "wss://c.example:443")
    assert (rotation.current, rotation.origin) == (A, "ws://a.example:8765")


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        ([], "no signaling server"),
        (["http://a.example"], "'http://a.example' must start with ws://"),
        ([A, "a.example:1"], "'a.example:1' must start with ws://"),
        ([A, B, "ws://A.example:8765/"], r"'ws://A.example:8765/' is given twice \(as 'ws://a"),
        (["ws://a.example", "ws://a.example:80"], "'ws://a.example:80' is given twice"),
        (["ws://:1"], "not a ws:// or wss:// URL with a host: 'ws://:1'"),
    ],
)
def test_bad_lists_are_refused_naming_the_value(urls: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        servers(urls)


def test_other_paths_on_one_host_are_other_servers() -> None:
    assert len(servers(["ws://a.example/one", "ws://a.example/two"]).urls) == 2


def test_an_ssl_context_wants_every_url_wss() -> None:
    with pytest.raises(ConfigError, match=f"needs a wss:// signaling URL, not '{A}'"):
        servers([C, A], tls=True)
    assert servers([C], tls=True).current == C


def test_the_next_server_at_once_and_backoff_only_after_a_whole_round() -> None:
    rotation = servers([A, B, C])
    expected = random.Random(SEED)  # the same draws as the rotation's own
    delays = [rotation.ended("p", REFUSED, now=0.0) for _ in range(6)]
    assert delays == [
        0.0,
        0.0,
        retry_delay(1, 0.2, 1.0, expected),
        0.0,
        0.0,
        retry_delay(2, 0.2, 1.0, expected),
    ]
    assert rotation.current == A  # two rounds: back at the first


def test_a_working_session_forgives_failures_and_a_lost_one_moves_on() -> None:
    rotation = servers([A, B])
    rotation.ended("p", REFUSED, now=0.0)  # A unreachable
    rotation.connected(now=0.0)  # on B
    assert rotation.ended("p", DROPPED, now=STABLE_SESSION) == 0.0  # B lost: A at once
    assert rotation.current == A
    assert rotation.ended("p", REFUSED, now=STABLE_SESSION) > 0  # A too: the round failed


def test_servers_that_drop_every_login_are_backed_off_from() -> None:
    rotation = servers([A, B])
    expected = random.Random(SEED)
    delays = []
    for _ in range(4):  # each accepts, and drops us a moment later
        rotation.connected(now=0.0)
        delays.append(rotation.ended("p", DROPPED, now=STABLE_SESSION / 2))
    assert delays == [
        0.0,
        retry_delay(1, 0.2, 1.0, expected),
        0.0,
        retry_delay(2, 0.2, 1.0, expected),
    ]


def test_a_draining_server_sends_its_clients_on_with_no_backoff() -> None:
    rotation = servers([A, B])
    rotation.connected(now=0.0)
    assert rotation.ended("p", DRAINING, now=1.0) == 0.0
    assert rotation.current == B
    alone = servers(A)  # with one URL, it is dialed again at once (it may be back)
    alone.ended("p", REFUSED, now=0.0)
    alone.connected(now=0.0)
    assert alone.ended("p", DRAINING, now=1.0) == 0.0
    # Going away again before any session worked: a failure like any other.
    alone.connected(now=1.0)
    assert alone.ended("p", DRAINING, now=1.5) > 0
    alone.connected(now=2.0)  # a session that works makes the next 1001 free again
    assert alone.ended("p", DRAINING, now=2.0 + STABLE_SESSION) == 0.0


def test_one_url_backs_off_after_every_failure_as_before() -> None:
    rotation = servers(A)
    expected = random.Random(SEED)
    delays = [rotation.ended("p", REFUSED, now=0.0) for _ in range(4)]
    assert delays == [retry_delay(n, 0.2, 1.0, expected) for n in (1, 2, 3, 4)]
    assert delays[-1] <= 1.0  # the cap


def test_the_log_says_where_the_client_goes_and_why(caplog: pytest.LogCaptureFixture) -> None:
    rotation = servers([A, B])
    rotation.connected(now=0.0)
    with caplog.at_level(logging.INFO, logger="crdtsync.signaling"):
        rotation.ended("peer1", DRAINING, now=1.0)
        rotation.ended("peer1", REFUSED, now=1.0)
    assert caplog.messages[0] == (
        f"! peer1 lost {A} (closed 1001 (going away): server shutting down); dialing {B} at once"
    )
    assert caplog.messages[1] == (
        f"! peer1 could not reach {B} (ConnectionRefusedError: [Errno 111] Connection refused); "
        f"dialing {A} at once"
    )
