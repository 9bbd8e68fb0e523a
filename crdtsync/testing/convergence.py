"""Deciding and awaiting convergence of replicas, whatever their root types hold.

Two Yjs documents are equal exactly when they hold the same structs (the same state vector)
and the same deletions (the same delete set). Both encodings list clients in hash order, so
this module decodes them into a canonical, comparable ``DocVersion``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pycrdt

from crdtsync.errors import SyncTimeoutError
from crdtsync.protocol.ymessages import read_state_vector
from crdtsync.protocol.yupdate import read_delete_set

__all__ = ["DocVersion", "converged", "doc_version", "wait_converged"]

DocVersion = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, tuple[tuple[int, int], ...]], ...]]


def doc_version(doc: pycrdt.Doc[Any]) -> DocVersion:
    """The canonical (state vector, delete set) of ``doc``: equal versions, equal documents."""
    state = doc.get_state()
    # An update against our own state vector holds no structs, only the whole delete set.
    deletions = read_delete_set(doc.get_update(state))
    if deletions is None:
        raise ValueError("an update against the document's own state still holds structs")
    return tuple(sorted(read_state_vector(state).items())), tuple(sorted(deletions.items()))


def converged(docs: Sequence[pycrdt.Doc[Any]]) -> bool:
    """Whether every document holds the same version."""
    versions = {doc_version(doc) for doc in docs}
    return len(versions) <= 1


async def wait_converged(docs: Sequence[pycrdt.Doc[Any]], *, timeout: float = 10.0) -> None:
    """Wait until all ``docs`` are equal, checking on every change; SyncTimeoutError if not."""
    changed = asyncio.Event()
    subscriptions = [(doc, doc.observe(lambda _event: changed.set())) for doc in docs]
    try:
        async with asyncio.timeout(timeout):
            while not converged(docs):
                changed.clear()
                await changed.wait()
    except TimeoutError as exc:
        versions = {doc_version(doc)[0] for doc in docs}
        raise SyncTimeoutError(
            f"{len(docs)} documents not converged within {timeout} s "
            f"({len(versions)} distinct state vectors)"
        ) from exc
    finally:
        for doc, subscription in subscriptions:
            doc.unobserve(subscription)
