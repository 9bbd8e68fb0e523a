"""Subdocuments as Yjs itself makes and reads them: the tracker and Yjs agree on guids."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from typing import Any

import pycrdt
from yjs_peers import NODE_MODULES, REPO, require_node

from crdtsync.subdocs import SubdocAdded, SubdocTracker

SCRIPT = REPO / "tests" / "interop" / "js" / "subdocs.cjs"
TIMEOUT = 30.0


def run_yjs(parent: bytes, page: bytes) -> dict[str, Any]:
    """One round with Yjs in Node: it gets our updates, answers with its own."""
    given = {
        name: base64.b64encode(update).decode()
        for name, update in (("parent", parent), ("page", page))
    }
    done = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps(given),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_subdocs_made_by_pycrdt_and_by_yjs_travel_both_ways() -> None:
    require_node()
    parent = pycrdt.Doc()
    tracker = SubdocTracker(parent)
    page = pycrdt.Doc()
    page.get("text", type=pycrdt.Text).insert(0, "from pycrdt")
    parent.get("files", type=pycrdt.Map)["page"] = page
    tracker.events_received()
    answer = run_yjs(parent.get_update(), page.get_update())
    assert answer["added"] == [page.guid] == [answer["pageGuid"]]
    assert answer["pageText"] == "from pycrdt"
    parent.apply_update(base64.b64decode(answer["parent"]))
    (added,) = tracker.events_received()
    assert isinstance(added, SubdocAdded)
    assert added.guid == answer["ownGuid"]
    added.doc.apply_update(base64.b64decode(answer["own"]))
    text = parent.get("files", type=pycrdt.Map)["yjs"].get("text", type=pycrdt.Text)
    assert str(text) == "from yjs"
