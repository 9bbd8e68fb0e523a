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
from crdtsync.signaling.server import SignalingServer
from crdtsync.transport.webrtc import IceServer

__all__ = [
    "ConfigError",
    "CrdtSyncError",
    "IceServer",
    "LocalProtocolError",
    "Peer",
    "ProtocolError",
    "SignalingError",
    "SignalingServer",
    "StoreError",
    "SyncTimeoutError",
    "TransportError",
]
__version__ = "0.1.0"
