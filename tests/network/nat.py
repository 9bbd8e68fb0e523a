"""Two private networks behind NAT routers, and a "WAN" namespace both routers reach.

::

    lan-a 192.168.1.2 --- 192.168.1.1 rtr-a 10.0.1.2 ---+
                                  (masquerade)          10.0.1.1 wan  (coturn, signaling)
    lan-b 192.168.2.2 --- 192.168.2.1 rtr-b 10.0.2.2 ---+ 10.0.2.1     (no forwarding)

Each router masquerades what leaves towards the WAN and drops new connections coming in
(nftables); the WAN namespace forwards nothing, so the two LANs have no route to each other
and reach only the WAN's own addresses: a host candidate can never connect, a relay on the
WAN can. Namespace names are unique per topology, and all are deleted when it is torn down,
even after a failure. Needs root, ``ip`` (iproute2) and ``nft``; test modules import this by
name (their folder is on ``sys.path``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field

from crdtsync.errors import ConfigError

__all__ = ["WAN_ADDRESS", "Topology", "netns_tools"]

WAN_ADDRESS = "10.0.1.1"  # the WAN's address towards router A; B reaches it by its route

_ROUTER_RULES = """
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
}
table ip filter {
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname "wan" ct state new drop
    }
}
"""


def netns_tools() -> None:
    """ConfigError (one line) unless this process can build the topology."""
    if os.geteuid() != 0:
        raise ConfigError("network namespaces need root")
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            raise ConfigError(f"{tool} missing: apt-get install -y {package}")


def _run(*args: str, stdin: str | None = None) -> None:
    result = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")


@dataclass
class Topology:
    """The namespaces of one test; ``exec_prefix(name)`` runs a command inside one."""

    tag: str = field(default_factory=lambda: f"crdt{os.getpid() % 10000}{secrets.token_hex(2)}")
    created: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.tag}-{role}"

    def exec_prefix(self, role: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.ns(role))

    def build(self) -> None:
        for role in ("wan", "rtr-a", "rtr-b", "lan-a", "lan-b"):
            _run("ip", "netns", "add", self.ns(role))
            self.created.append(self.ns(role))
            _run("ip", "-n", self.ns(role), "link", "set", "lo", "up")
        # The WAN drops what it cannot route, as the internet drops private addresses: a
        # default route into a veth whose other end only discards (the kernel here has no
        # dummy devices). Without it, coturn relaying to a peer's LAN address gets
        # ENETUNREACH, and ends the whole allocation.
        wan = self.ns("wan")
        _run("ip", "-n", wan, "link", "add", "void", "type", "veth", "peer", "name", "void-end")
        for interface in ("void", "void-end"):
            _run("ip", "-n", wan, "link", "set", interface, "up")
        _run("ip", "-n", wan, "route", "add", "default", "dev", "void")
        for side, subnet in (("a", 1), ("b", 2)):
            router, lan = self.ns(f"rtr-{side}"), self.ns(f"lan-{side}")
            # WAN <-> router: the router's end is called "wan" (its rules name it).
            self._wire(
                (self.ns("wan"), f"to-{side}", f"10.0.{subnet}.1/24"),
                (router, "wan", f"10.0.{subnet}.2/24"),
            )
            self._wire(
                (router, "lan", f"192.168.{subnet}.1/24"), (lan, "eth0", f"192.168.{subnet}.2/24")
            )
            _run("ip", "-n", router, "route", "add", "default", "via", f"10.0.{subnet}.1")
            _run("ip", "-n", lan, "route", "add", "default", "via", f"192.168.{subnet}.1")
            _run("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            _run("ip", "netns", "exec", router, "nft", "-f", "-", stdin=_ROUTER_RULES)

    def _wire(self, left: tuple[str, str, str], right: tuple[str, str, str]) -> None:
        """A veth between two namespaces; each end is ``(namespace, interface, address)``."""
        (left_ns, left_if, _), (right_ns, right_if, _) = left, right
        _run(
            "ip", "-n", left_ns, "link", "add", left_if,
            "type", "veth", "peer", "name", right_if, "netns", right_ns,
        )  # fmt: skip
        for ns, interface, address in (left, right):
            _run("ip", "-n", ns, "addr", "add", address, "dev", interface)
            _run("ip", "-n", ns, "link", "set", interface, "up")

    def tear_down(self) -> None:
        """Delete every namespace made (their veths and processes' sockets go with them)."""
        for name in reversed(self.created):
            subprocess.run(("ip", "netns", "delete", name), capture_output=True, timeout=30)
        self.created.clear()
