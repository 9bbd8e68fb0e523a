"""The subdocument loader against a small in-memory workspace (open and close record docs)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pycrdt
import pytest

from crdtsync.errors import StoreError
from crdtsync.subdoc_loader import SubdocLoader


class Workspace:
    """Records what the loader opens and closes; fails to open the doc ids in ``broken``."""

    def __init__(self, broken: frozenset[str] = frozenset()) -> None:
        self.docs: dict[str, pycrdt.Doc[Any]] = {}
        self.broken = broken

    def open(self, doc_id: str, doc: pycrdt.Doc[Any]) -> None:
        if doc_id in self.broken:
            raise StoreError(f"cannot load {doc_id}")
        assert doc_id not in self.docs
        self.docs[doc_id] = doc

    def close(self, doc_id: str) -> None:
        del self.docs[doc_id]


async def next_turn() -> None:
    """Return once the callbacks queued so far ran (the loader's among them): the loop runs
    them in order."""
    turned = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(turned.set_result, None)
    await turned


async def test_subdocs_open_with_their_instance_and_close_when_they_leave() -> None:
    workspace = Workspace()
    loader = SubdocLoader(workspace.open, workspace.close)
    parent = pycrdt.Doc()
    files = parent.get("files", type=pycrdt.Map)
    files["old"] = pycrdt.Doc(guid="old")
    loader.track("book", parent)
    assert workspace.docs.keys() == {"subdoc:old"}  # what the document held already
    chapter = pycrdt.Doc(guid="chapter")
    chapter.get("sections", type=pycrdt.Map)["1"] = pycrdt.Doc(guid="section")
    files["chapter"] = chapter
    assert workspace.docs.keys() == {"subdoc:old"}  # not inside pycrdt's commit
    await next_turn()
    assert workspace.docs.keys() == {"subdoc:old", "subdoc:chapter", "subdoc:section"}
    files["chapter"].get("text", type=pycrdt.Text).insert(0, "x")
    assert str(workspace.docs["subdoc:chapter"].get("text", type=pycrdt.Text)) == "x"
    del files["chapter"]
    await next_turn()
    assert workspace.docs.keys() == {"subdoc:old"}
    assert loader.opened == {"subdoc:old"}
    loader.untrack("book")
    assert workspace.docs == {}
    loader.close()
    loader.close()


def test_without_a_running_loop_changes_wait_for_drain() -> None:
    workspace = Workspace()
    loader = SubdocLoader(workspace.open, workspace.close)
    parent = pycrdt.Doc()
    loader.track("book", parent)
    parent.get("files", type=pycrdt.Map)["a"] = pycrdt.Doc(guid="a")
    assert workspace.docs == {}
    loader.drain()
    assert workspace.docs.keys() == {"subdoc:a"}


async def test_a_guid_in_two_documents_opens_once_and_a_failure_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workspace = Workspace(broken=frozenset({"subdoc:broken"}))
    loader = SubdocLoader(workspace.open, workspace.close)
    first, second = pycrdt.Doc(), pycrdt.Doc()
    first.get("files", type=pycrdt.Map)["shared"] = pycrdt.Doc(guid="shared")
    for guid in ("shared", "broken", "fine"):
        second.get("files", type=pycrdt.Map)[guid] = pycrdt.Doc(guid=guid)
    loader.track("first", first)
    loader.track("second", second)
    loader.track("second", first)  # tracked already: stays as it is
    assert workspace.docs.keys() == {"subdoc:shared", "subdoc:fine"}
    assert "could not open subdoc:broken" in caplog.text
    loader.untrack("second")  # "shared" was opened for the first
    assert workspace.docs.keys() == {"subdoc:shared"}
    loader.track("second", second)
    loader.untrack("first")  # now the second's instance takes over
    second.get("files", type=pycrdt.Map)["shared"].get("text", type=pycrdt.Text).insert(0, "2")
    assert str(workspace.docs["subdoc:shared"].get("text", type=pycrdt.Text)) == "2"
    loader.close()
    second.get("files", type=pycrdt.Map)["late"] = pycrdt.Doc()
    await next_turn()
    assert workspace.docs.keys() == {"subdoc:shared", "subdoc:fine"}


def test_no_more_than_max_open_subdocs_open(caplog: pytest.LogCaptureFixture) -> None:
    workspace = Workspace()
    loader = SubdocLoader(workspace.open, workspace.close, max_open=2)
    parent = pycrdt.Doc()
    for guid in ("a", "b", "c", "d"):
        parent.get("files", type=pycrdt.Map)[guid] = pycrdt.Doc(guid=guid)
    with caplog.at_level(logging.WARNING, logger="crdtsync.subdoc_loader"):
        loader.track("flood", parent)
    assert len(workspace.docs) == 2
    assert len(caplog.records) == 1
