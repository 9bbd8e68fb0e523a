"""One pycrdt document as the mesh sees it: local edits out, remote updates in.

The replica observes every transaction on the ``Doc``. Updates it applied for a link are
tagged with that link, so the mesh never echoes them back; everything produced before the
mesh drains the outbox (one event-loop tick) leaves as one merged update per origin.
With a store, the outbox is committed there as it is drained, before anything is sent.

Remote content that arrives before what it depends on is kept here, not left to pycrdt:
pycrdt (0.14) holds such content back itself, but can lose track of it, so that it never
integrates even once every dependency has arrived (seen with the bundled traces over real
WebRTC). The replica keeps what did not integrate and applies it again after each later
remote update until it does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pycrdt

from crdtsync.protocol.ymessages import read_state_vector, read_var_uint
from crdtsync.protocol.yupdate import (
    MAX_CLOCK,
    delete_set_covers,
    reach,
    read_delete_set,
    write_state_vector,
)
from crdtsync.store import Store

__all__ = [
    "MAX_WAITING",
    "UNKNOWN_ORIGIN",
    "OutgoingUpdate",
    "Replica",
    "merge_many",
    "unintegrated",
]

logger = logging.getLogger(__name__)

# Remote content held for missing dependencies, at most (bytes): well above what honest
# out-of-order delivery holds (a few frames), far below what would strain memory.
MAX_WAITING = 16 << 20
# pycrdt's merge_updates is fast for ~1k small updates (4.7 ms) but superlinear beyond
# (100k: 67 s): merge in groups of this size, then merge the results.
MERGE_GROUP = 512
# The origin of remote content whose link is not known (it came free with another update):
# it goes to every link, and unlike a local edit it is nobody's own.
UNKNOWN_ORIGIN = object()


@dataclass(frozen=True, slots=True)
class OutgoingUpdate:
    """An update to send: ``origin`` is the link it came from, None for a local edit, or
    :data:`UNKNOWN_ORIGIN`."""

    update: bytes
    origin: object | None


def merge_many(updates: list[bytes]) -> bytes:
    """Merge any number of updates into one, in groups so the cost stays near linear."""
    while len(updates) > 1:
        groups = [updates[i : i + MERGE_GROUP] for i in range(0, len(updates), MERGE_GROUP)]
        updates = [pycrdt.merge_updates(*group) if len(group) > 1 else group[0] for group in groups]
    return updates[0]


def unintegrated(doc: pycrdt.Doc[Any], update: bytes) -> bytes | None:
    """The part of ``update``'s content that ``doc`` does not hold, or None if it holds all.

    Deletions are not looked at: a state vector does not show them.
    """
    rest = pycrdt.get_update(update, doc.get_state())
    return rest if _has_content(rest) else None


def _has_content(update: bytes) -> bool:
    groups, _ = read_var_uint(update, 0)  # a v1 update starts with its count of client groups
    return groups > 0


class Replica:
    """A ``pycrdt.Doc`` with an outbox; implements the sync core's ``DocumentAccess``."""

    def __init__(
        self,
        doc: pycrdt.Doc[Any],
        *,
        doc_id: str = "default",
        on_outgoing: Callable[[], None] | None = None,
        store: Store | None = None,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.doc = doc
        self.max_waiting = max_waiting
        self.doc_id = doc_id
        self.on_outgoing = on_outgoing
        self.store = store
        if store is not None:
            self._load(store)
        self._captured: list[bytes] | None = None  # transactions of apply_remote, if in one
        # By origin: updates from equal origins (one link, the same sources) merge.
        self._outbox: dict[object | None, list[bytes]] = {}
        self._waiting: bytes | None = None  # remote content whose dependencies are missing
        self._subscription: pycrdt.Subscription | None = doc.observe(self._on_transaction)

    def _load(self, store: Store) -> None:
        """Bring back what the store holds, and log what only the doc held so far."""
        before = self.doc.get_update()
        for update in store.load(self.doc_id):
            self.doc.apply_update(update)
        if _has_content(before):  # the doc came with content of its own
            store.append(self.doc_id, [before])

    def close(self) -> None:
        """Stop observing the document (it stays usable, and holds every edit); idempotent."""
        if self._subscription is not None:
            self.doc.unobserve(self._subscription)
            self._subscription = None

    # -- DocumentAccess -------------------------------------------------------------------------

    def state_vector(self) -> bytes:
        return self.doc.get_state()

    def missing_since(self, state_vector: bytes) -> bytes:
        return self.doc.get_update(state_vector)

    @property
    def waiting(self) -> bool:
        """Whether remote content is held until what it depends on arrives."""
        return self._waiting is not None

    def apply_remote(self, update: bytes, origin: object) -> None:
        """Apply an update from link ``origin``; ValueError if pycrdt rejects it."""
        before = self.doc.get_state()
        captured: list[bytes] = []
        self._captured = captured
        try:
            self.doc.apply_update(update)
        except BaseException:
            for made in captured:  # whatever got in must still go out
                self._queue(UNKNOWN_ORIGIN, made)
            raise
        finally:
            self._captured = None
        # The usual case: the doc took in exactly this update, all of it, and nothing else.
        whole = captured == [update]
        if captured:
            integrated = merge_many(captured)
            own = whole or self._only_from(update, integrated, before)
            # Content held back for missing dependencies (from other links, or applied
            # locally) may have come free with this update. Its source is unknown, so it
            # goes to every link, the one this update arrived on included.
            self._queue(origin if own else UNKNOWN_ORIGIN, integrated)
        parts = [] if whole else [update]
        if self._waiting is not None:
            # Held content may have waited for what this update brought. Its origin is
            # unknown by now, so whatever integrates goes to every link.
            self.doc.apply_update(self._waiting)
            parts.append(self._waiting)
        missing = [rest for part in parts if (rest := unintegrated(self.doc, part)) is not None]
        self._waiting = merge_many(missing) if missing else None
        if self._waiting is not None and len(self._waiting) > self.max_waiting:
            # Content that never finds its dependencies is junk, or a peer trying to make us
            # hoard it: drop it. Honest peers send it again on the next sync.
            logger.warning(
                "! %s: dropped %d bytes of remote content still missing dependencies",
                self.doc_id,
                len(self._waiting),
            )
            self._waiting = None

    # -- outbox ---------------------------------------------------------------------------------

    def take_outgoing(self) -> list[OutgoingUpdate]:
        """Everything since the last call: one merged update per origin, oldest origin first.

        With a store, it is committed there before this returns (the write-ahead rule: no
        update leaves before it is durable). StoreError if that fails.
        """
        outbox, self._outbox = self._outbox, {}
        outgoing = [
            OutgoingUpdate(merge_many(updates), origin) for origin, updates in outbox.items()
        ]
        if self.store is not None and outgoing:
            self.store.append(self.doc_id, [item.update for item in outgoing])
            if self.store.wants_compaction(self.doc_id):
                self.store.compact(self.doc_id, self.doc.get_update())
        return outgoing

    def _only_from(self, update: bytes, integrated: bytes, before: bytes) -> bool:
        """Whether all the doc ``integrated`` while applying ``update`` was ``update``'s own
        content (``before`` is the doc's state vector from just before)."""
        after = self.doc.get_state()
        start, end = read_state_vector(before), read_state_vector(after)
        grown = {client: clock for client, clock in end.items() if clock > start.get(client, 0)}
        reached = reach(update, start)
        if any(clock > reached.get(client, 0) for client, clock in grown.items()):
            return False  # structs beyond what the update's own clocks reach
        made = read_delete_set(pycrdt.get_update(integrated, after))
        if not made:
            return True
        everyone = write_state_vector(dict.fromkeys(end.keys() | reached.keys(), MAX_CLOCK))
        given = read_delete_set(pycrdt.get_update(update, everyone))
        return given is not None and delete_set_covers(given, made)

    def _on_transaction(self, event: pycrdt.TransactionEvent) -> None:
        # A duplicate update changes nothing and fires no event, so relays stop by themselves.
        if self._captured is not None:
            self._captured.append(event.update)  # apply_remote tells its origin
        else:
            self._queue(None, event.update)

    def _queue(self, origin: object | None, update: bytes) -> None:
        first = not self._outbox
        self._outbox.setdefault(origin, []).append(update)
        if first and self.on_outgoing is not None:
            self.on_outgoing()
