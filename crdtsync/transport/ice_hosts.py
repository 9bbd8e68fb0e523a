"""Which local addresses ICE offers as host candidates: the one aioice internal we touch.

aioice's ``get_host_addresses()`` skips 127.0.0.1 and ::1 and offers every other interface,
so peers on one machine cannot be held to loopback (tests, the demo) without help. Inside
``host_addresses(...)``, gathering offers exactly the given addresses; outside it, aioice
behaves as it always does. The choice lives in a context variable, so concurrent peers in
one process each keep their own.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import aioice.ice

__all__ = ["host_addresses"]

_chosen: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "crdtsync_ice_host_addresses", default=None
)
_original: Callable[[bool, bool], list[str]] | None = None


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _chosen.get()
    if chosen is None:
        assert _original is not None
        return _original(use_ipv4, use_ipv6)
    return [
        address
        for address in chosen
        if (":" in address and use_ipv6) or (":" not in address and use_ipv4)
    ]


def _install() -> None:
    """Put our chooser in front of aioice's, once per process."""
    global _original
    if _original is None:
        _original = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = _get_host_addresses


@contextmanager
def host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Gather ICE host candidates only on ``addresses`` within the block (None: aioice's choice)."""
    _install()
    token = _chosen.set(None if addresses is None else tuple(addresses))
    try:
        yield
    finally:
        _chosen.reset(token)
