"""Events a link core reports to its adapter, one small immutable class per fact.

The adapter drains them with ``LinkProtocol.events_received()`` after every input and
acts on them (mark a peer linked, relay presence, drop the link).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AwarenessQueried",
    "AwarenessReceived",
    "DocumentAbsent",
    "DocumentRequested",
    "Event",
    "HelloReceived",
    "LinkClosed",
    "LinksReceived",
    "SyncCompleted",
]


@dataclass(frozen=True, slots=True)
class HelloReceived:
    """The remote peer introduced itself: the link is open."""

    peer_id: str
    capabilities: frozenset[str]


@dataclass(frozen=True, slots=True)
class SyncCompleted:
    """Step 2 arrived for a document: this side now holds everything the remote had."""

    doc_id: str


@dataclass(frozen=True, slots=True)
class AwarenessReceived:
    """A presence update (y-protocols awareness update bytes) arrived for a document."""

    doc_id: str
    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessQueried:
    """The remote asked for every presence state we know (y-webrtc's query-awareness)."""

    doc_id: str


@dataclass(frozen=True, slots=True)
class DocumentRequested:
    """The remote sent a frame for a document this link does not carry: the adapter either
    adds it (``add_document``: the frame is then handled) or refuses it (``refuse_document``)."""

    doc_id: str


@dataclass(frozen=True, slots=True)
class DocumentAbsent:
    """The remote does not sync this document with us (ABSENT): nothing to wait for from it."""

    doc_id: str


@dataclass(frozen=True, slots=True)
class LinksReceived:
    """The remote peer announced the peers it has open links with (used to relay less)."""

    peer_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class LinkClosed:
    """The link is closed; ``by_remote`` says whether the remote side ended it."""

    code: int
    reason: str
    by_remote: bool


Event = (
    HelloReceived
    | SyncCompleted
    | AwarenessReceived
    | AwarenessQueried
    | DocumentRequested
    | DocumentAbsent
    | LinksReceived
    | LinkClosed
)
