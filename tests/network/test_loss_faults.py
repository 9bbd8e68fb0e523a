"""The network faults themselves (``crdtsync/netfault.py``): a namespace of its own, loss,
blackout, heal, and the UDP byte counter, seen by a real UDP socket inside."""

from __future__ import annotations

import subprocess
import sys

import pytest
from needs import require_found

from crdtsync import netfault
from crdtsync.errors import ConfigError

DATAGRAMS = 200
# Inside the namespace: send DATAGRAMS to ourselves, print how many arrived.
ECHO = f"""
import socket
receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
receiver.bind(("127.0.0.1", 0))
receiver.settimeout(0.2)
sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range({DATAGRAMS}):
    sender.sendto(b"x" * 72, receiver.getsockname())
arrived = 0
try:
    while True:
        receiver.recv(100)
        arrived += 1
except TimeoutError:
    print(arrived)
"""


def arrived(net: netfault.FaultyNetwork) -> int:
    done = subprocess.run(
        net.command([sys.executable, "-c", ECHO]),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return int(done.stdout)


def test_blackout_drops_every_udp_packet_and_heal_none() -> None:
    require_found(netfault.check)
    with netfault.FaultyNetwork() as net:
        assert arrived(net) == DATAGRAMS
        net.blackout()
        assert arrived(net) == 0
        net.heal()
        assert arrived(net) == DATAGRAMS
        # 100-byte IP packets (72 bytes, 8 of UDP and 20 of IP headers), dropped ones too
        assert net.udp_bytes() == 3 * DATAGRAMS * 100


def test_random_loss_drops_some_and_the_namespace_goes_away() -> None:
    require_found(netfault.check)
    with netfault.FaultyNetwork() as net:
        net.loss(50)
        assert 0 < arrived(net) < DATAGRAMS  # 200 draws at 50%: all or none is 2**-200
        name = net.name
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert name not in listed.stdout


def test_a_loss_beyond_100_percent_is_refused() -> None:
    require_found(netfault.check)
    with netfault.FaultyNetwork() as net, pytest.raises(ConfigError, match="0 to 100"):
        net.loss(101)
