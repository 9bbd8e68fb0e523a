"""The replica: local edits batch into one update per origin; remote ones carry their link."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pycrdt
import pytest

from crdtsync.replica import MERGE_GROUP, UNKNOWN_ORIGIN, Replica, merge_many, unintegrated
from crdtsync.testing import doc_version


def test_edits_of_one_tick_leave_as_one_merged_update() -> None:
    doc = pycrdt.Doc()
    calls: list[None] = []
    replica = Replica(doc, on_outgoing=lambda: calls.append(None))
    text = doc.get("text", type=pycrdt.Text)
    for char in "hello":
        text += char
    assert len(calls) == 1  # the mesh is woken once per batch
    (outgoing,) = replica.take_outgoing()
    assert outgoing.origin is None
    other = pycrdt.Doc()
    other.apply_update(outgoing.update)
    assert str(other.get("text", type=pycrdt.Text)) == "hello"
    assert replica.take_outgoing() == []
    text += "!"
    assert len(calls) == 2


def test_remote_updates_are_tagged_with_their_link_and_kept_apart() -> None:
    source = pycrdt.Doc()
    source["m"] = pycrdt.Map({"a": 1})
    doc = pycrdt.Doc()
    replica = Replica(doc)
    doc.get("text", type=pycrdt.Text).insert(0, "local")
    replica.apply_remote(source.get_update(), origin="link-1")
    replica.apply_remote(source.get_update(), origin="link-2")  # a duplicate: no event
    origins = [item.origin for item in replica.take_outgoing()]
    assert origins == [None, "link-1"]


def test_merge_many_handles_more_than_one_group() -> None:
    doc = pycrdt.Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get("text", type=pycrdt.Text)
    for index in range(MERGE_GROUP * 2 + 7):
        text.insert(index % (len(text) + 1), "x")
    merged = merge_many(updates)
    copy = pycrdt.Doc()
    copy.apply_update(merged)
    assert doc_version(copy) == doc_version(doc)
    assert str(copy.get("text", type=pycrdt.Text)) == str(text)


def test_closed_replica_stops_listening() -> None:
    doc = pycrdt.Doc()
    replica = Replica(doc)
    replica.close()
    replica.close()
    doc["text"] = pycrdt.Text("after close")
    assert replica.take_outgoing() == []


def _in_two_updates(typed: str, then: Callable[[pycrdt.Text], None]) -> tuple[bytes, bytes]:
    """An author types ``typed``, then does ``then``: the two as updates, the second only
    what ``then`` did."""
    author = pycrdt.Doc(client_id=1)
    text = author.get("text", type=pycrdt.Text)
    text += typed
    before = author.get_update()
    state = author.get_state()
    then(text)
    return before, author.get_update(state)


def test_content_released_from_pending_goes_to_every_link() -> None:
    """An update that waited for a dependency is not credited to the link that unblocked it."""
    first, second = _in_two_updates("first", lambda text: text.insert(5, " second"))

    replica = Replica(pycrdt.Doc())
    replica.apply_remote(second, origin="link-late")  # held: "first" is missing
    assert replica.take_outgoing() == []
    replica.apply_remote(first, origin="link-early")
    (outgoing,) = replica.take_outgoing()
    assert outgoing.origin is UNKNOWN_ORIGIN
    assert str(replica.doc.get("text", type=pycrdt.Text)) == "first second"


def _typed(text: str, client_id: int = 1) -> list[bytes]:
    """One update per character typed by ``client_id``."""
    author = pycrdt.Doc(client_id=client_id)
    updates: list[bytes] = []
    author.observe(lambda event: updates.append(event.update))
    typed = author.get("text", type=pycrdt.Text)
    for char in text:
        typed += char
    return updates


def test_a_merged_remote_update_is_credited_to_its_link() -> None:
    """pycrdt re-encodes what it integrates (joining neighbouring items), so the replica
    must not mistake a merged update for content that came free with it, and echo it."""
    merged = pycrdt.merge_updates(*_typed("twenty characters..."))
    replica = Replica(pycrdt.Doc())
    replica.apply_remote(merged, origin="link-1")
    (outgoing,) = replica.take_outgoing()
    assert outgoing.origin == "link-1"
    assert len(outgoing.update) < len(merged)  # the doc's encoding joins the items


def test_content_applied_locally_before_its_dependency_goes_to_every_link() -> None:
    first, second = _typed("ab")
    replica = Replica(pycrdt.Doc())
    replica.doc.apply_update(second)  # an app applying an update out of order: held back
    assert replica.take_outgoing() == []
    replica.apply_remote(first, origin="link")
    (outgoing,) = replica.take_outgoing()
    assert outgoing.origin is UNKNOWN_ORIGIN  # "b" came free: the link has never seen it
    assert str(replica.doc.get("text", type=pycrdt.Text)) == "ab"


def test_a_deletion_released_with_a_remote_update_goes_to_every_link() -> None:
    inserted, deleted = _in_two_updates("abc", lambda text: text.__delitem__(1))
    replica = Replica(pycrdt.Doc())
    replica.doc.apply_update(deleted)  # its item is not there yet: pycrdt holds it
    replica.take_outgoing()
    replica.apply_remote(inserted, origin="link")
    assert str(replica.doc.get("text", type=pycrdt.Text)) == "ac"
    assert [item.origin for item in replica.take_outgoing()] == [UNKNOWN_ORIGIN]


def test_a_remote_update_with_deletions_of_its_own_is_credited_to_its_link() -> None:
    author = pycrdt.Doc(client_id=1)
    text = author.get("text", type=pycrdt.Text)
    text += "abc"
    del text[1]
    replica = Replica(pycrdt.Doc())
    replica.apply_remote(author.get_update(), origin="link")
    assert [item.origin for item in replica.take_outgoing()] == ["link"]


def _apply_all(doc: pycrdt.Doc[Any], updates: list[bytes]) -> pycrdt.Doc[Any]:
    for update in updates:
        doc.apply_update(update)
    return doc


def test_content_that_pycrdt_loses_track_of_is_integrated_by_the_replica() -> None:
    path = Path(__file__).parent / "data" / "stuck_arrival_order.msgpack.gz"
    arrivals: list[bytes] = msgpack.unpackb(gzip.decompress(path.read_bytes()))
    everything = _apply_all(pycrdt.Doc(), arrivals * 2).get_state()  # a second pass unsticks
    plain = _apply_all(pycrdt.Doc(), arrivals).get_state()
    assert plain != everything, "pycrdt now integrates it alone: Replica._waiting may go"
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    replica = Replica(doc)
    for update in arrivals:
        replica.apply_remote(update, origin="link")
    assert doc.get_state() == everything


def test_remote_content_waits_for_what_it_depends_on() -> None:
    source: pycrdt.Doc[Any] = pycrdt.Doc()
    text = source.get("text", type=pycrdt.Text)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    for word in ("one ", "two ", "three"):
        text.insert(len(text), word)
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    replica = Replica(doc)
    replica.apply_remote(updates[2], origin="link")  # depends on the two before it
    assert replica.waiting
    assert unintegrated(doc, updates[2]) is not None
    replica.apply_remote(updates[1], origin="link")
    replica.apply_remote(updates[0], origin="link")
    assert not replica.waiting
    assert str(doc.get("text", type=pycrdt.Text)) == "one two three"


def test_content_waiting_too_long_is_dropped_past_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    source: pycrdt.Doc[Any] = pycrdt.Doc()
    text = source.get("text", type=pycrdt.Text)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    text.insert(0, "first ")
    text.insert(len(text), "x" * 1000)  # depends on the first
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    replica = Replica(doc, max_waiting=500)
    replica.apply_remote(updates[1], origin="link")
    assert not replica.waiting
    assert "dropped" in caplog.text
