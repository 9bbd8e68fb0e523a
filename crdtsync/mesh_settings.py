"""How a peer builds its mesh: the settings, their defaults, and the link cores it can run.

Apart from ``mesh.py`` so that the facade, the benchmarks and the tests can name them
without the mesh's machinery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from crdtsync.errors import ConfigError
from crdtsync.protocol.batching import DEFAULT_BATCH_WINDOW
from crdtsync.protocol.link import LinkCore, LinkProtocol, LinkSettings
from crdtsync.protocol.sync import DocumentAccess

__all__ = [
    "DEFAULT_MAX_CONNS",
    "DEFAULT_PRESENCE_TIMEOUT",
    "LinkCoreFactory",
    "MeshSettings",
    "native_link_core",
]

# y-webrtc connects to up to 20-34 peers; beyond that a room is a partial mesh.
DEFAULT_MAX_CONNS = 20
# y-protocols' awareness outdated timeout (awareness.js), so browser peers agree.
DEFAULT_PRESENCE_TIMEOUT = 30.0


LinkCoreFactory = Callable[[str, Mapping[str, DocumentAccess], str, LinkSettings], LinkCore]
"""Builds the core of a new link: ``(local id, documents, remote id, settings)``."""


def native_link_core(
    local_id: str, documents: Mapping[str, DocumentAccess], remote_id: str, settings: LinkSettings
) -> LinkCore:
    """crdtsync's own dialect: HELLO, heartbeats, chunking, LINKS (``protocol/link.py``)."""
    return LinkProtocol(local_id, documents, expected_peer=remote_id, settings=settings)


@dataclass(frozen=True, slots=True)
class MeshSettings:
    """How a peer builds its mesh; every default says where it comes from."""

    max_conns: int = DEFAULT_MAX_CONNS
    # Redial backoff: 0.1 s doubling up to 5 s, jittered, so a healed partition reconnects
    # within seconds without a thundering herd.
    reconnect_base: float = 0.1
    reconnect_cap: float = 5.0
    presence_timeout: float = DEFAULT_PRESENCE_TIMEOUT
    # Batching window: an edit after a quiet spell leaves at the end of its event-loop tick;
    # edits that follow within this many seconds of the last send wait for the window to
    # close and leave merged; a steady stream widens it (see protocol/batching.py).
    batch_window: float = DEFAULT_BATCH_WINDOW
    # A document loaded for a remote (from the store, not open here) is unloaded after this
    # many seconds without an update in or out: a keeper of thousands holds the busy few.
    unload_after: float = 30.0
    link: LinkSettings = field(default_factory=LinkSettings)

    def __post_init__(self) -> None:
        if self.max_conns < 1:
            raise ConfigError(f"max_conns must be at least 1 (got {self.max_conns})")
        if self.unload_after <= 0:
            raise ConfigError(f"unload_after must be above 0 (got {self.unload_after})")
        if not 0 < self.reconnect_base <= self.reconnect_cap:
            raise ConfigError(
                "need 0 < reconnect_base <= reconnect_cap "
                f"(got {self.reconnect_base}, {self.reconnect_cap})"
            )
