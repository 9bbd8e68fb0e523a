"""The one exception hierarchy of crdtsync.

Every error crdtsync raises on purpose derives from :class:`CrdtSyncError`::

    CrdtSyncError
    ├── ProtocolError            bad bytes or an illegal step in a protocol
    │   └── LocalProtocolError   our own caller misused a protocol object
    ├── SignalingError           the signaling server refused or failed
    ├── TransportError           a link could not be opened or broke
    ├── StoreError               the durable store is unreadable or foreign
    ├── ConfigError              an argument or setting is invalid
    └── SyncTimeoutError         a wait ran out of time (also a TimeoutError)

Foreign exceptions (aiortc, websockets, sqlite3) are mapped at the boundary and
chained with ``from``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CrdtSyncError",
    "LocalProtocolError",
    "ProtocolError",
    "SignalingError",
    "StoreError",
    "SyncTimeoutError",
    "TransportError",
]


class CrdtSyncError(Exception):
    """Root of every error crdtsync raises on purpose."""


class ProtocolError(CrdtSyncError):
    """Bytes that break the protocol, or a step the protocol does not allow.

    ``close_code`` is the code a link closes with when a peer caused it (1002, protocol
    error, unless the cause has a code of its own such as 1003, unsupported version).
    """

    def __init__(self, message: str, *, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code


class LocalProtocolError(ProtocolError):
    """Our own caller drove a protocol object wrongly (a bug in the caller)."""


class SignalingError(CrdtSyncError):
    """The signaling server refused a request or could not be reached."""


class TransportError(CrdtSyncError):
    """A link to a remote peer could not be opened, or broke."""


class StoreError(CrdtSyncError):
    """The durable store cannot be read or written."""


class ConfigError(CrdtSyncError, ValueError):
    """An argument or setting is invalid; the message names it and the allowed values."""


class SyncTimeoutError(CrdtSyncError, TimeoutError):
    """A wait ran past its timeout; the message says what was awaited."""
