"""The documents of a workspace: their ids, who may sync which, and how a store serves them.

A peer hosts any number of documents over one link per remote peer. This module holds the
rules that do not depend on links: what a valid document id is, the share policy's shape,
and :class:`StoredDocuments`, which opens a stored document on demand when a remote asks
for one that is not open here (the always-on keeper).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pycrdt

from crdtsync.errors import ConfigError
from crdtsync.protocol.frames import MAX_DOC_ID_LENGTH
from crdtsync.replica import Replica
from crdtsync.store import Store

__all__ = [
    "DEFAULT_DOC_ID",
    "SharePolicy",
    "StoredDocuments",
    "check_doc_id",
    "share_everything",
]

DEFAULT_DOC_ID = "default"  # the document of Peer(doc, ...), and of every y-webrtc room

SharePolicy = Callable[[str, str], bool]
"""``share(remote_id, doc_id)``: whether that remote peer may sync that document with us
(and learn its id). A refused document is answered like one we lack."""

# Letters, digits and the punctuation of paths, URNs and UUIDs; no whitespace at either end,
# no control characters (ids show up in logs and file trees).
_DOC_ID = re.compile(r"[\w.~:@/+#=,\-]([\w.~:@/+#=,\- ]*[\w.~:@/+#=,\-])?")


def share_everything(remote_id: str, doc_id: str) -> bool:
    """The default share policy: every linked peer may sync every document."""
    return True


def check_doc_id(doc_id: object) -> str:
    """``doc_id`` if it is a valid document id, else ConfigError saying why."""
    if not isinstance(doc_id, str):
        raise ConfigError(f"a document id is a str (got {type(doc_id).__name__})")
    if not doc_id:
        raise ConfigError("a document id cannot be empty")
    if len(doc_id) > MAX_DOC_ID_LENGTH:
        raise ConfigError(
            f"document id is {len(doc_id)} characters, above the limit of {MAX_DOC_ID_LENGTH}"
        )
    if _DOC_ID.fullmatch(doc_id) is None:
        raise ConfigError(
            f"document id {doc_id!r} may hold letters, digits, spaces (not at either end) "
            "and . ~ : @ / + # = , - only"
        )
    return doc_id


class StoredDocuments:
    """Serves documents that are not open from the store, when a remote asks for them.

    With ``keep_all`` every document a remote asks for is kept, stored or not: a keeper
    that holds the whole room's workspace. The mesh unloads what it opened this way once
    it has been idle.
    """

    def __init__(self, store: Store, *, keep_all: bool = False) -> None:
        self.store = store
        self.keep_all = keep_all

    def serve(self, doc_id: str) -> Replica | None:
        """A replica of ``doc_id`` loaded from the store, or None if it is not kept here."""
        if self.keep_all:
            try:
                check_doc_id(doc_id)  # a remote's id: only the wire's limit is checked yet
            except ConfigError:
                return None
        elif not self.store.holds(doc_id):
            return None
        return Replica(pycrdt.Doc(), doc_id=doc_id, store=self.store)
