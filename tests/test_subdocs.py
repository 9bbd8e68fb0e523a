"""The subdocument tracker, on real pycrdt documents exchanging updates by hand."""

from __future__ import annotations

import logging
from typing import Any

import pycrdt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtsync.errors import ConfigError
from crdtsync.subdocs import (
    MAX_GUID_LENGTH,
    SubdocAdded,
    SubdocRemoved,
    SubdocTracker,
    guid_of,
    is_subdoc_id,
    subdoc_id,
)

Doc = pycrdt.Doc[Any]


def send(source: Doc, target: Doc) -> None:
    """What one sync round carries: everything ``target`` lacks of ``source``."""
    target.apply_update(source.get_update(target.get_state()))


def text_in(doc: Doc) -> str:
    return str(doc.get("text", type=pycrdt.Text))


def summary(events: list[SubdocAdded | SubdocRemoved]) -> list[tuple[str, str, str]]:
    return [
        ("added" if isinstance(event, SubdocAdded) else "removed", event.guid, event.parent)
        for event in events
    ]


def test_a_subdoc_made_here_is_reported_with_the_instance_in_the_map() -> None:
    parent = pycrdt.Doc(guid="parent")
    wakeups: list[None] = []
    tracker = SubdocTracker(parent, on_change=lambda: wakeups.append(None))
    assert tracker.events_received() == []
    parent.get("files", type=pycrdt.Map)["a"] = pycrdt.Doc(guid="a")
    assert len(wakeups) == 1
    (added,) = tracker.events_received()
    assert isinstance(added, SubdocAdded)
    assert (added.guid, added.parent) == ("a", "parent")
    parent.get("files", type=pycrdt.Map)["a"].get("text", type=pycrdt.Text).insert(0, "hi")
    assert text_in(added.doc) == "hi"  # one document, however it is reached
    assert tracker.subdocs.keys() == {"a"}
    assert tracker.events_received() == []


def test_the_receiving_side_reports_the_same_guid_and_syncs_its_content_both_ways() -> None:
    alice, bob = pycrdt.Doc(guid="notes"), pycrdt.Doc(guid="notes")
    alice_tracker, bob_tracker = SubdocTracker(alice), SubdocTracker(bob)
    bob.get("files", type=pycrdt.Map)  # declared before anything arrives
    page = pycrdt.Doc()
    page.get("text", type=pycrdt.Text).insert(0, "from alice")
    alice.get("files", type=pycrdt.Map)["page"] = page
    (made,) = alice_tracker.events_received()
    send(alice, bob)
    (arrived,) = bob_tracker.events_received()
    assert isinstance(made, SubdocAdded)
    assert isinstance(arrived, SubdocAdded)
    assert arrived.guid == made.guid == page.guid
    assert text_in(arrived.doc) == ""  # the parent's update carries the guid only
    send(made.doc, arrived.doc)  # the subdoc's own sync session
    assert text_in(bob.get("files", type=pycrdt.Map)["page"]) == "from alice"
    bob.get("files", type=pycrdt.Map)["page"].get("text", type=pycrdt.Text).insert(0, "bob, ")
    send(arrived.doc, made.doc)
    assert text_in(alice.get("files", type=pycrdt.Map)["page"]) == "bob, from alice"


def test_subdocs_present_at_attach_are_reported_even_in_undeclared_roots() -> None:
    source = pycrdt.Doc()
    source.get("files", type=pycrdt.Map)["m"] = pycrdt.Doc(guid="in-map")
    source.get("list", type=pycrdt.Array).append(pycrdt.Doc(guid="in-array"))
    nested = pycrdt.Map({"deep": pycrdt.Array([pycrdt.Doc(guid="deep")])})
    source.get("tree", type=pycrdt.Map)["branch"] = nested
    source.get("text", type=pycrdt.Text).insert(0, "no subdocs here")
    loaded = pycrdt.Doc()
    loaded.apply_update(source.get_update())  # as a store loads it: no root declared
    tracker = SubdocTracker(loaded)
    events = tracker.events_received()
    assert {event.guid for event in events} == {"in-map", "in-array", "deep"}
    # The roots holding subdocuments now have their types; the user's reads agree.
    assert loaded.get("files", type=pycrdt.Map)["m"].guid == "in-map"
    assert loaded.get("list", type=pycrdt.Array)[0].guid == "in-array"
    assert text_in(loaded) == "no subdocs here"


def test_nested_subdocs_are_reported_with_their_parent_and_removed_innermost_first() -> None:
    chapter = pycrdt.Doc(guid="chapter")
    # pycrdt 0.14 panics when a doc is inserted into a doc that is already a subdocument,
    # so the nesting is built first.
    chapter.get("sections", type=pycrdt.Map)["one"] = pycrdt.Doc(guid="section")
    book = pycrdt.Doc(guid="book")
    book.get("chapters", type=pycrdt.Map)["1"] = chapter
    reader = pycrdt.Doc(guid="book")
    tracker = SubdocTracker(reader)
    send(book, reader)
    (added,) = tracker.events_received()
    assert summary([added]) == [("added", "chapter", "book")]
    assert isinstance(added, SubdocAdded)
    send(chapter, added.doc)  # the chapter's content names the section
    assert summary(tracker.events_received()) == [("added", "section", "chapter")]
    del book.get("chapters", type=pycrdt.Map)["1"]
    send(book, reader)
    assert summary(tracker.events_received()) == [
        ("removed", "section", "chapter"),
        ("removed", "chapter", "book"),
    ]
    assert tracker.subdocs == {}


def test_a_replaced_instance_is_removed_then_added_again() -> None:
    parent = pycrdt.Doc(guid="p")
    files = parent.get("files", type=pycrdt.Map)
    files["a"] = pycrdt.Doc(guid="a")
    tracker = SubdocTracker(parent)
    tracker.events_received()
    files["a"] = replacement = pycrdt.Doc(guid="a")
    events = tracker.events_received()
    assert summary(events) == [("removed", "a", "p"), ("added", "a", "p")]
    assert isinstance(events[1], SubdocAdded)
    replacement.get("text", type=pycrdt.Text).insert(0, "new")
    assert text_in(events[1].doc) == "new"


def test_of_two_instances_of_one_guid_the_remaining_one_takes_over() -> None:
    parent = pycrdt.Doc(guid="p")
    files = parent.get("files", type=pycrdt.Map)
    files["first"] = pycrdt.Doc(guid="same")
    files["second"] = second = pycrdt.Doc(guid="same")
    tracker = SubdocTracker(parent)
    assert summary(tracker.events_received()) == [("added", "same", "p")]
    del files["first"]
    events = tracker.events_received()
    assert summary(events) == [("removed", "same", "p"), ("added", "same", "p")]
    second.get("text", type=pycrdt.Text).insert(0, "still here")
    assert isinstance(events[1], SubdocAdded)
    assert text_in(events[1].doc) == "still here"


def test_a_guid_that_cannot_be_a_doc_id_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parent = pycrdt.Doc(guid="p")
    files = parent.get("files", type=pycrdt.Map)
    files["long"] = pycrdt.Doc(guid="x" * (MAX_GUID_LENGTH + 1))
    files["control"] = pycrdt.Doc(guid="bad\nguid")
    files["self"] = pycrdt.Doc(guid="p")  # the parent's own guid: already synced
    files["fine"] = pycrdt.Doc(guid="fine")
    with caplog.at_level(logging.WARNING, logger="crdtsync.subdocs"):
        tracker = SubdocTracker(parent)
        events = tracker.events_received()
        files["later"] = pycrdt.Doc(guid="later")  # a second look: no second warning
        events += tracker.events_received()
    assert summary(events) == [("added", "fine", "p"), ("added", "later", "p")]
    assert len(caplog.records) == 2


def test_close_stops_reporting() -> None:
    parent = pycrdt.Doc()
    wakeups: list[None] = []
    tracker = SubdocTracker(parent, on_change=lambda: wakeups.append(None))
    tracker.close()
    tracker.close()
    parent.get("files", type=pycrdt.Map)["a"] = pycrdt.Doc()
    assert wakeups == []
    assert tracker.events_received() == []
    assert tracker.subdocs == {}


def test_doc_ids_of_subdocs() -> None:
    assert subdoc_id("3f2c") == "subdoc:3f2c"
    assert guid_of(subdoc_id("3f2c")) == "3f2c"
    assert is_subdoc_id("subdoc:3f2c")
    assert not is_subdoc_id("notes")
    assert guid_of("notes") is None
    for bad in ("", "a\tb", "x" * (MAX_GUID_LENGTH + 1)):
        with pytest.raises(ConfigError, match="guid"):
            subdoc_id(bad)


# One step on the writing side: put a new subdoc at a key, or delete a key.
steps = st.lists(st.tuples(st.sampled_from("abcd"), st.booleans()), max_size=30)


@given(steps)
def test_both_sides_track_exactly_the_guids_the_parent_holds(ops: list[tuple[str, bool]]) -> None:
    writer, reader = pycrdt.Doc(guid="w"), pycrdt.Doc(guid="w")
    writer_tracker, reader_tracker = SubdocTracker(writer), SubdocTracker(reader)
    files = writer.get("files", type=pycrdt.Map)
    for count, (key, put) in enumerate(ops):
        if put:
            files[key] = pycrdt.Doc(guid=f"{key}{count}")
        elif key in files:
            del files[key]
        if count % 3 == 0:
            send(writer, reader)
            reader_tracker.events_received()
        writer_tracker.events_received()
    send(writer, reader)
    reader_tracker.events_received()
    held = {sub.guid for sub in files.values()}
    assert writer_tracker.subdocs.keys() == reader_tracker.subdocs.keys() == held
