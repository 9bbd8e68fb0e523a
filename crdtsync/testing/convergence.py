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
from crdtsync.protocol.ymessages import read_state_vector, read_var_uint

__all__ = ["DocVersion", "converged", "doc_version", "wait_converged"]

DocVersion = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, tuple[tuple[int, int], ...]], ...]]


def doc_version(doc: pycrdt.Doc[Any]) -> DocVersion:
    """The canonical (state vector, delete set) of ``doc``: equal versions, equal documents."""
    state = doc.get_state()
    clocks = read_state_vector(state)
    # An update against our own state vector holds no structs, only the whole delete set.
    update = doc.get_update(state)
    structs, offset = read_var_uint(update, 0)
    if structs != 0:
        raise ValueError("an update against the document's own state still holds structs")
    count, offset = read_var_uint(update, offset)
    deletions = []
    for _ in range(count):
        client, offset = read_var_uint(update, offset)
        ranges, offset = read_var_uint(update, offset)
        spans = []
        for _ in range(ranges):
            clock, offset = read_var_uint(update, offset)
            length, offset = read_var_uint(update, offset)
            spans.append((clock, length))
        deletions.append((client, _merged(spans)))
    return tuple(sorted(clocks.items())), tuple(sorted(deletions))


def _merged(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Delete ranges sorted with touching ranges joined, so equal sets encode alike."""
    result: list[tuple[int, int]] = []
    for clock, length in sorted(spans):
        if result and clock <= result[-1][0] + result[-1][1]:
            start, previous = result[-1]
            result[-1] = (start, max(previous, clock + length - start))
        else:
            result.append((clock, length))
    return tuple(result)


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
