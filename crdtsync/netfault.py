"""Faults on a real network: random UDP loss and UDP blackouts, in a namespace of their own.

The kernel here has no ``sch_netem``, so loss comes from nftables (``numgen random mod 100
< N drop``) on the input hook of a fresh network namespace that holds only a loopback
interface. Processes started with ``command(argv)`` (peers, a signaling server) run in it
and see the faults; nothing outside the namespace does. Signaling is TCP and unaffected:
only the WebRTC data plane (UDP) is hit. A counter before the fault gives the UDP bytes put
on the wire (``udp_bytes()``: IP packets, dropped ones included). Needs root, ``ip`` and
``nft``; ``check()`` says which is missing as a ``ConfigError``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from crdtsync.errors import ConfigError

__all__ = ["NAMESPACE_PREFIX", "FaultyNetwork", "check"]

logger = logging.getLogger(__name__)

NAMESPACE_PREFIX = "crdtsync-fault-"  # then the owner's pid and a counter
NETNS_DIR = Path("/run/netns")  # where ``ip netns`` keeps named namespaces
TABLE = "crdtsync_fault"
COUNTER = "udp_sent"  # every UDP packet that reaches the fault, dropped or not
COMMAND_TIMEOUT = 10.0  # seconds for one ``ip`` or ``nft`` call (they take milliseconds)

_counter = itertools.count(1)


def check() -> None:
    """Raise ``ConfigError`` naming what is missing to make network faults here."""
    if os.geteuid() != 0:
        raise ConfigError("network faults need root (a network namespace and nftables)")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            raise ConfigError(f"network faults need {tool!r} (apt-get install iproute2 nftables)")


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    """Run one ``ip`` or ``nft`` command; its output, or a ConfigError with its complaint."""
    try:
        done = subprocess.run(
            argv, input=stdin, text=True, capture_output=True, check=True, timeout=COMMAND_TIMEOUT
        )
    except subprocess.CalledProcessError as exc:
        raise ConfigError(f"{' '.join(argv)} failed: {exc.stderr.strip()}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{' '.join(argv)} failed: {exc}") from exc
    return done.stdout


def _remove_stale() -> None:
    """Delete the namespaces of owners that died without closing them (killed tests)."""
    if not NETNS_DIR.is_dir():
        return
    for path in NETNS_DIR.glob(f"{NAMESPACE_PREFIX}*"):
        owner = path.name.removeprefix(NAMESPACE_PREFIX).split("-")[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            logger.info("= removing stale network namespace %s", path.name)
            subprocess.run(["ip", "netns", "delete", path.name], capture_output=True, check=False)


class FaultyNetwork:
    """A loopback-only network namespace whose UDP can be made lossy or cut off.

    ``with FaultyNetwork() as net:`` creates it (lossless); ``net.command(argv)`` is the
    argv that runs a program inside; ``loss(percent)``, ``blackout()`` and ``heal()`` change
    the fault; leaving the block deletes the namespace and its rules.
    """

    def __init__(self) -> None:
        self.name = f"{NAMESPACE_PREFIX}{os.getpid()}-{next(_counter)}"
        self.loss_percent = 0
        self._open = False

    def __enter__(self) -> FaultyNetwork:
        self.open()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        check()
        _remove_stale()
        _run(["ip", "netns", "add", self.name])
        self._open = True
        try:
            _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
            self._nft(
                f"table inet {TABLE} {{\n"
                f"  counter {COUNTER} {{ }}\n"
                "  chain input { type filter hook input priority 0; policy accept; }\n"
                "}\n"
            )
            self._set_rule("")
        except ConfigError:
            self.close()
            raise
        logger.info("= network namespace %s ready", self.name)

    def close(self) -> None:
        """Delete the namespace (its rules go with it); idempotent. Processes still inside
        keep it alive until they exit, with no way in for anyone else."""
        if self._open:
            self._open = False
            _run(["ip", "netns", "delete", self.name])
            logger.info("= network namespace %s deleted", self.name)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def loss(self, percent: int) -> None:
        """Drop ``percent`` % of UDP packets at random (0: none), each way."""
        if not 0 <= percent <= 100:
            raise ConfigError(f"loss is a percentage from 0 to 100 (got {percent})")
        rule = "" if percent == 0 else f"meta l4proto udp numgen random mod 100 < {percent} drop"
        self._set_rule(rule)
        self.loss_percent = percent

    def blackout(self) -> None:
        """Drop every UDP packet until ``heal()`` or ``loss()``."""
        self._set_rule("meta l4proto udp drop")
        self.loss_percent = 100

    def heal(self) -> None:
        """Drop nothing any more."""
        self.loss(0)

    def _set_rule(self, rule: str) -> None:
        if not self._open:
            raise ConfigError(f"network namespace {self.name} is not open")
        script = f"flush chain inet {TABLE} input\n"
        script += f"add rule inet {TABLE} input meta l4proto udp counter name {COUNTER}\n"
        if rule:
            script += f"add rule inet {TABLE} input {rule}\n"
        self._nft(script)
        logger.info("= %s: %s", self.name, rule or "no fault")

    def udp_bytes(self) -> int:
        """Bytes of UDP packets sent in the namespace so far (IP headers included)."""
        listing = self._nft_output(["-j", "list", "counter", "inet", TABLE, COUNTER])
        for entry in json.loads(listing)["nftables"]:
            if "counter" in entry:
                return int(entry["counter"]["bytes"])
        raise ConfigError(f"nft lists no counter {COUNTER} in {self.name}")

    def _nft(self, script: str) -> None:
        _run(["ip", "netns", "exec", self.name, "nft", "-f", "-"], stdin=script)

    def _nft_output(self, args: Sequence[str]) -> str:
        return _run(["ip", "netns", "exec", self.name, "nft", *args])
