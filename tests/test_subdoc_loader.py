"""The subdocument loader against a small in-memory workspace (open and close record docs)."""

from __future__ import annotations

import asyncio
from typing import Any

import pycrdt
import pytest

from crdtsync.errors import ConfigError
from crdtsync.subdoc_loader import SubdocLoader

TIMEOUT = 5.0


class Workspace:
    """Records what the loader opens and closes; refuses the doc ids in ``refused``."""

    def __init__(self, refused: frozenset[str] = frozenset()) -> None:
        self.docs: dict[str, pycrdt.Doc[Any]] = {}
        self.refused = refused
        self.changed = asyncio.Condition()

    async def open(self, doc_id: str, doc: pycrdt.Doc[Any]) -> None:
        if doc_id in self.refused:
            raise ConfigError(f"refused {doc_id}")
        assert doc_id not in self.docs
        self.docs[doc_id] = doc
        async with self.changed:
            self.changed.notify_all()

    async def close(self, doc_id: str) -> None:
        del self.docs[doc_id]
        async with self.changed:
            self.changed.notify_all()

    async def until(self, ids: set[str]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: self.docs.keys() == ids), TIMEOUT)


async def test_subdocs_open_with_their_instance_and_close_when_they_leave() -> None:
    workspace = Workspace()
    loader = SubdocLoader(workspace.open, workspace.close)
    loader.start()
    parent = pycrdt.Doc()
    chapter = pycrdt.Doc(guid="chapter")
    chapter.get("sections", type=pycrdt.Map)["1"] = pycrdt.Doc(guid="section")
    parent.get("files", type=pycrdt.Map)["old"] = pycrdt.Doc(guid="old")
    loader.track("book", parent)  # what the document holds already counts
    await workspace.until({"subdoc:old"})
    parent.get("files", type=pycrdt.Map)["chapter"] = chapter
    await workspace.until({"subdoc:old", "subdoc:chapter", "subdoc:section"})
    parent.get("files", type=pycrdt.Map)["chapter"].get("text", type=pycrdt.Text).insert(0, "x")
    assert str(workspace.docs["subdoc:chapter"].get("text", type=pycrdt.Text)) == "x"
    del parent.get("files", type=pycrdt.Map)["chapter"]
    await workspace.until({"subdoc:old"})
    assert loader.opened == {"subdoc:old"}
    await loader.untrack("book")
    assert workspace.docs == {}
    await loader.aclose()
    await loader.aclose()


async def test_a_guid_in_two_documents_opens_once_and_a_refusal_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workspace = Workspace(refused=frozenset({"subdoc:refused"}))
    loader = SubdocLoader(workspace.open, workspace.close)
    loader.start()
    first, second = pycrdt.Doc(), pycrdt.Doc()
    first.get("files", type=pycrdt.Map)["shared"] = pycrdt.Doc(guid="shared")
    second.get("files", type=pycrdt.Map)["shared"] = pycrdt.Doc(guid="shared")
    second.get("files", type=pycrdt.Map)["refused"] = pycrdt.Doc(guid="refused")
    second.get("files", type=pycrdt.Map)["fine"] = pycrdt.Doc(guid="fine")
    loader.track("first", first)
    loader.track("second", second)
    await workspace.until({"subdoc:shared", "subdoc:fine"})
    assert "could not open subdoc:refused" in caplog.text
    await loader.untrack("second")  # "shared" was opened for the first
    assert workspace.docs.keys() == {"subdoc:shared"}
    await loader.aclose()
