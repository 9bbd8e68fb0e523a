"""Subdocuments (Yjs's model): ``pycrdt.Doc`` values placed inside a document's shared types.

A parent's update carries only a subdocument's guid; its content is a document of its own,
synced on its own. ``SubdocTracker`` watches a parent (and, recursively, the subdocuments it
finds) and reports each subdocument that appears or goes, with the ``Doc`` instance that
lives inside the parent on this peer, so that edits made through the parent reach the doc
that is synced. The workspace opens each one under ``subdoc_id(guid)``. No I/O, no clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pycrdt

from crdtsync.errors import ConfigError
from crdtsync.protocol.frames import MAX_DOC_ID_LENGTH
from crdtsync.workspace import check_doc_id

__all__ = [
    "SUBDOC_PREFIX",
    "SubdocAdded",
    "SubdocEvent",
    "SubdocRemoved",
    "SubdocTracker",
    "guid_of",
    "is_subdoc_id",
    "subdoc_id",
    "valid_guid",
]

logger = logging.getLogger(__name__)

# Workspace doc ids of subdocuments are this prefix and the guid; the workspace refuses it
# in the ids users open, so the two kinds never clash.
SUBDOC_PREFIX = "subdoc:"
# The longest guid whose doc id still fits the envelope's doc id limit.
MAX_GUID_LENGTH = MAX_DOC_ID_LENGTH - len(SUBDOC_PREFIX)


def valid_guid(guid: str) -> bool:
    """Whether ``guid`` can name a synced subdocument: its doc id is a valid document id (Yjs
    makes UUIDs, but any string is allowed there, and peers may send junk)."""
    try:
        subdoc_id(guid)
    except ConfigError:
        return False
    return True


def subdoc_id(guid: str) -> str:
    """The workspace doc id of the subdocument ``guid``; ConfigError if no doc id can hold it."""
    if not guid:
        raise ConfigError("a subdocument guid cannot be empty")
    try:
        return check_doc_id(SUBDOC_PREFIX + guid)
    except ConfigError as exc:
        raise ConfigError(f"subdocument guid {guid[:40]!r} makes no document id: {exc}") from exc


def is_subdoc_id(doc_id: str) -> bool:
    """Whether ``doc_id`` names a subdocument (and so is not for users to open)."""
    return doc_id.startswith(SUBDOC_PREFIX)


def guid_of(doc_id: str) -> str | None:
    """The guid inside a subdocument's doc id; None for any other doc id."""
    return doc_id[len(SUBDOC_PREFIX) :] if is_subdoc_id(doc_id) else None


@dataclass(frozen=True, slots=True)
class SubdocAdded:
    """A subdocument appeared in ``parent`` (a guid): sync ``doc``, the instance in there."""

    guid: str
    doc: pycrdt.Doc[Any]
    parent: str


@dataclass(frozen=True, slots=True)
class SubdocRemoved:
    """The subdocument ``guid`` left ``parent``, or its instance there was replaced."""

    guid: str
    parent: str


SubdocEvent = SubdocAdded | SubdocRemoved


@dataclass(slots=True)
class _Watched:
    doc: pycrdt.Doc[Any]
    parent: str  # guid of the doc it lives in
    subscription: pycrdt.Subscription
    looked: bool  # searched once already: until then every root is read, added or not
    dirty: bool  # pycrdt reported a change since the last look
    # Made at the first report only: a thousand documents without subdocuments hold none.
    added: set[str] | None = None  # guids pycrdt reported added since the last look
    replaced: set[str] | None = None  # guids pycrdt reported removed since the last look


class SubdocTracker:
    """Reports the subdocuments of ``doc``, nested ones included, as events to drain.

    pycrdt reports subdocument changes during a transaction's commit, with guids only. The
    tracker notes them there and calls ``on_change`` (a wake-up: the caller then drains
    ``events_received()``); the documents are searched only when drained, outside any
    transaction. The subdocuments present at construction come out of the first drain.

    One instance per guid is synced: should a parent hold two ``Doc`` values with the same
    guid, the first found is reported, and the other's edits stay local.
    """

    __slots__ = ("_closed", "_events", "_ignored", "_watched", "doc", "on_change")

    def __init__(self, doc: pycrdt.Doc[Any], *, on_change: Callable[[], None] | None = None):
        self.doc = doc
        self.on_change = on_change
        self._watched: dict[str, _Watched] = {}  # the parent itself and every subdocument
        self._events: list[SubdocEvent] = []
        self._ignored: set[str] | None = None  # guids already warned about (once there is one)
        self._closed = False
        self._watch(doc, parent="")

    @property
    def subdocs(self) -> dict[str, pycrdt.Doc[Any]]:
        """Every subdocument reported so far and not removed since, by guid."""
        return {
            guid: watched.doc for guid, watched in self._watched.items() if guid != self.doc.guid
        }

    def events_received(self) -> list[SubdocEvent]:
        """What changed since the last call: parents are added before what they hold, and
        removed after it. Nothing after ``close()``."""
        if not self._closed:
            while any(watched.dirty for watched in self._watched.values()):
                for guid in [guid for guid, watched in self._watched.items() if watched.dirty]:
                    if guid in self._watched:  # not removed with an earlier parent
                        self._look(guid)
        events, self._events = self._events, []
        return events

    def close(self) -> None:
        """Stop observing every document; idempotent. Reports no removals."""
        if not self._closed:
            self._closed = True
            for watched in self._watched.values():
                watched.doc.unobserve(watched.subscription)
            self._watched.clear()
            self._events.clear()

    def _watch(self, doc: pycrdt.Doc[Any], parent: str) -> None:
        guid = doc.guid

        def noted(event: pycrdt.SubdocsEvent) -> None:
            watched = self._watched[guid]
            added, removed = event.added, event.removed  # type: ignore[attr-defined]
            if added and watched.looked:
                watched.added = (watched.added or set()) | set(added)
            if removed:
                watched.replaced = (watched.replaced or set()) | set(removed)
            watched.dirty = True
            if self.on_change is not None:
                self.on_change()

        subscription = doc.observe_subdocs(noted)
        # An empty document (one opened fresh, before its content arrives) holds nothing to
        # look for: what arrives later says so itself. Looking would read its undeclared roots
        # on scratch copies of it, once the content is in: twice its cost to apply.
        empty = doc.get_state() == _EMPTY_STATE
        self._watched[guid] = _Watched(doc, parent, subscription, looked=empty, dirty=not empty)

    def _look(self, guid: str) -> None:
        """Bring what is known of the subdocuments directly inside ``guid`` up to date."""
        watched = self._watched[guid]
        added = (watched.added or set()) if watched.looked else None
        replaced = watched.replaced or set()
        watched.added = watched.replaced = None
        watched.looked, watched.dirty = True, False
        found = _direct_subdocs(watched.doc, added)
        gone = [
            child
            for child, held in self._watched.items()
            if held.parent == guid and (child not in found or child in replaced)
        ]
        for child in gone:
            self._forget(child)
        if gone:
            # Another parent may hold an instance of a guid just dropped: look everywhere.
            for held in self._watched.values():
                held.dirty = True
        for child, doc in found.items():
            if child in self._watched:
                continue  # already synced (here, or as another parent's instance)
            if not valid_guid(child):
                if self._ignored is None:
                    self._ignored = set()
                if child not in self._ignored:
                    self._ignored.add(child)
                    logger.warning("! subdocument guid %r in %s ignored: not a doc id", child, guid)
                continue
            logger.debug("= subdocument %s added in %s", child, guid)
            self._events.append(SubdocAdded(child, doc, guid))
            self._watch(doc, guid)

    def _forget(self, guid: str) -> None:
        """Drop ``guid`` and what it holds, innermost first."""
        for child in [child for child, held in self._watched.items() if held.parent == guid]:
            self._forget(child)
        watched = self._watched.pop(guid)
        watched.doc.unobserve(watched.subscription)
        logger.debug("= subdocument %s removed from %s", guid, watched.parent)
        self._events.append(SubdocRemoved(guid, watched.parent))


_EMPTY_STATE = b"\x00"  # the state vector of a document with no content


def _direct_subdocs(doc: pycrdt.Doc[Any], added: set[str] | None) -> dict[str, pycrdt.Doc[Any]]:
    """The subdocuments ``doc``'s shared types hold (not those inside them), by guid.

    Undeclared roots cost a copy of the document to read, so they are read only when
    needed: on the first look (``added`` None), or for an added guid not found elsewhere.
    """
    roots = dict(doc.items())
    found: dict[str, pycrdt.Doc[Any]] = {}
    for root in roots.values():
        for sub in _docs_in(root):
            found.setdefault(sub.guid, sub)
    undeclared = [name for name, root in roots.items() if root is None]
    if undeclared and (added is None or not added <= found.keys()):
        for name, kind in _kinds_holding_docs(doc, undeclared).items():
            for sub in _docs_in(doc.get(name, type=kind)):
                found.setdefault(sub.guid, sub)
    return found


def _docs_in(value: object) -> Iterator[pycrdt.Doc[Any]]:
    if isinstance(value, pycrdt.Doc):
        yield value
    elif isinstance(value, pycrdt.Map):
        for item in value.values():
            yield from _docs_in(item)
    elif isinstance(value, pycrdt.Array):
        for item in value:
            yield from _docs_in(item)
    # Text and XML hold no subdocuments: Yjs encodes a Doc embedded in text as JSON.


def _kinds_holding_docs(
    doc: pycrdt.Doc[Any], names: list[str]
) -> dict[str, type[pycrdt.Map[Any]] | type[pycrdt.Array[Any]]]:
    """The type of each undeclared root in ``names`` that holds subdocuments.

    An update does not say a root's type, and pycrdt shows an undeclared root as None. A
    root read as the wrong type would give its observers the wrong events, so the type is
    found on scratch copies: only a Map root holds keyed entries, and of the sequences only
    an Array holds documents.
    """
    kinds: dict[str, type[pycrdt.Map[Any]] | type[pycrdt.Array[Any]]] = {}
    for kind in (pycrdt.Map, pycrdt.Array):
        scratch: pycrdt.Doc[Any] = pycrdt.Doc()
        scratch.apply_update(doc.get_update())
        for name in names:
            if name not in kinds and any(True for _ in _docs_in(scratch.get(name, type=kind))):
                logger.debug(
                    "= root %r of %s read as %s: it holds subdocuments",
                    name,
                    doc.guid,
                    kind.__name__,
                )
                kinds[name] = kind
    return kinds
