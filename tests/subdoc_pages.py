"""What the subdocument tests share, on the simulated network and over WebRTC: a parent
document's map ``files`` holding pages (subdocuments), each with a text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pycrdt

from crdtsync import Peer
from crdtsync.subdocs import subdoc_id


def files(doc: pycrdt.Doc[Any]) -> pycrdt.Map[Any]:
    return doc.get("files", type=pycrdt.Map)


def page_text(parent: pycrdt.Doc[Any], key: str = "page") -> str | None:
    """The text of the subdocument at ``key`` of the parent's map, reached through it."""
    page = files(parent).get(key)
    return None if page is None else str(page.get("text", type=pycrdt.Text))


async def until_page_open(
    peers: Sequence[Peer],
    parents: Sequence[pycrdt.Doc[Any]],
    page: pycrdt.Doc[Any],
    text: str,
    *,
    timeout: float,
) -> None:
    """Wait until every peer has ``page`` open as a document of its own, and its parent
    shows it with ``text``."""
    for peer, parent in zip(peers, parents, strict=True):
        await peer.wait_for(
            lambda peer=peer, parent=parent: (
                page_text(parent) == text and subdoc_id(page.guid) in peer.documents
            ),
            timeout=timeout,
            what="the page open, with its content",
        )
