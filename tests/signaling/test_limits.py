"""The shared limits, sans I/O: admission per address and overall, throttled refusal logs,
address keys, the deadline heap."""

from __future__ import annotations

import pytest

from crdtsync.errors import ConfigError
from crdtsync.signaling.limits import (
    Admission,
    ConnectionLimits,
    DeadlineHeap,
    SignalingSettings,
    address_key,
)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9%eth0", "2001:db8:1:2::/64"),  # one /64, one budget
        ("", ""),
    ],
)
def test_addresses_are_counted_by_ipv4_address_or_ipv6_prefix(host: str, key: str) -> None:
    assert address_key(host) == key


def test_admission_caps_each_address_and_the_whole() -> None:
    admission = Admission(SignalingSettings(max_connections_per_address=2, max_connections=3))
    assert admission.admit("a") is None
    assert admission.admit("a") is None
    assert admission.admit("a") == (
        "address-full",
        "2 connections from this address, the most allowed",
    )
    assert admission.admit("b") is None
    assert admission.admit("c") == ("server-full", "3 connections open, the most allowed")
    admission.release("a")
    assert admission.held("a") == 1
    assert admission.admit("c") is None


def test_refusals_are_logged_once_per_address_per_interval() -> None:
    admission = Admission(SignalingSettings(refusal_log_interval=60.0))
    assert admission.should_log("a", 0.0)
    assert not admission.should_log("a", 59.0)
    assert admission.should_log("b", 59.0)
    assert admission.should_log("a", 60.0)


def test_the_deadline_heap_fixes_stale_entries_and_drops_closed_ones() -> None:
    settings = SignalingSettings(idle_timeout=10.0)
    real = {
        conn: ConnectionLimits(settings, start, login=False)
        for conn, start in ((1, 0.0), (2, 10.0), (3, 20.0))
    }
    heap = DeadlineHeap(real.get)
    for conn, limits in real.items():
        heap.push(limits.deadline, conn)
    assert real[1].receive(15.0, 1) is None  # a message moved it later; the heap is not touched
    del real[2]  # closed
    assert heap.next() == 25.0
    assert heap.expire(26.0) == [(1, 1001, "idle for 10 s")]
    assert heap.next() == 30.0
    assert len(heap) == 1


@pytest.mark.parametrize(
    "field",
    [
        {"login_timeout": 0},
        {"bytes_per_second": 0},
        {"max_connections_per_address": 0},
        {"max_joins_per_room_per_address": 0},
        {"byte_burst": 1000},
        {"violations_forgiven_per_second": -1},
    ],
)
def test_settings_refuse_nonsense(field: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        SignalingSettings(**field)  # type: ignore[arg-type]
