"""crdtsync: keep Yjs-compatible ``pycrdt`` documents in sync, peer to peer."""

from crdtsync.errors import (
    ConfigError,
    CrdtSyncError,
    LocalProtocolError,
    ProtocolError,
    SignalingError,
    StoreError,
    SyncTimeoutError,
    TransportError,
)
from crdtsync.peer import Peer

__all__ = [
    "ConfigError",
    "CrdtSyncError",
    "LocalProtocolError",
    "Peer",
    "ProtocolError",
    "SignalingError",
    "StoreError",
    "SyncTimeoutError",
    "TransportError",
]
__version__ = "0.1.0"
