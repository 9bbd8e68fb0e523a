"""Cursors in the Yjs bindings' awareness shape: written as relative positions, read back
from anyone without trusting them."""

from __future__ import annotations

import pycrdt
import pytest

from crdtsync.cursors import RemoteCursor, TextCursors


def two_clients() -> tuple[TextCursors, TextCursors]:
    docs = [pycrdt.Doc(), pycrdt.Doc()]
    return tuple(TextCursors(pycrdt.Awareness(doc), doc, "text") for doc in docs)  # type: ignore[return-value]


def sync(source: TextCursors, target: TextCursors) -> None:
    target.doc.apply_update(source.doc.get_update(target.doc.get_state()))
    update = source.awareness.encode_awareness_update([source.awareness.client_id])
    target.awareness.apply_awareness_update(update, "remote")


def test_the_awareness_state_has_the_bindings_shape() -> None:
    ours, _ = two_clients()
    ours.text += "hello"
    ours.set_user("alice", "#30bced")
    ours.set_cursor(1, 5)
    state = ours.awareness.get_local_state()
    assert state is not None
    assert state["user"] == {"name": "alice", "color": "#30bced"}
    client = ours.doc.client_id
    assert state["cursor"] == {
        "anchor": {"item": {"client": client, "clock": 1}, "assoc": 0},
        "head": {"type": None, "tname": "text", "item": None, "assoc": 0},  # the end, as Yjs
    }
    ours.clear_cursor()
    assert ours.awareness.get_local_state()["cursor"] is None  # type: ignore[index]


def test_a_remote_cursor_follows_its_characters() -> None:
    alice, bob = two_clients()
    alice.text += "hello world"
    sync(alice, bob)
    bob.set_user("bob", "#ee6352")
    bob.set_cursor(6, 11)  # "world" selected
    sync(bob, alice)
    assert alice.remote_cursors() == [RemoteCursor(bob.doc.client_id, "bob", "#ee6352", 6, 11)]
    alice.text.insert(0, ">> ")
    alice.text.insert(len(alice.text), "!")
    assert alice.remote_cursors()[0].anchor == 9
    assert alice.remote_cursors()[0].head == 15  # the end stays the end


def test_a_sticky_index_keeps_its_character() -> None:
    ours, _ = two_clients()
    ours.text += "abc"
    middle, end, start = ours.sticky(1), ours.sticky(3), ours.sticky(0)
    ours.text.insert(0, "xx")
    ours.text.insert(len(ours.text), "yy")
    assert (start.get_index(), middle.get_index(), end.get_index()) == (2, 3, 5)
    empty = TextCursors(pycrdt.Awareness(doc := pycrdt.Doc()), doc, "t")
    caret = empty.sticky(0)
    empty.text.insert(0, "typed by others")
    assert caret.get_index() == 0  # in an empty text too, what others append comes after


@pytest.mark.parametrize(
    "position",
    [
        None,
        "text",
        {"item": {"client": 12345, "clock": 0}, "assoc": 0},  # content we do not hold yet
        {"item": {"client": -1, "clock": 0}, "assoc": 0},
        {"item": {"client": 1.5, "clock": 0}, "assoc": 0},
        {"item": {"client": True, "clock": 0}, "assoc": 0},
        {"item": "x", "assoc": 0},
        {"tname": "other", "assoc": 0},  # another type
        {"type": {"client": 1, "clock": 2}, "assoc": 0},
        {"tname": "text", "assoc": "left"},
        {"assoc": 0},
    ],
)
def test_malformed_or_unplaceable_positions_are_none(position: object) -> None:
    ours, _ = two_clients()
    ours.text += "hello"
    assert ours.index_of(position) is None


def test_a_known_item_past_its_clients_clock_is_none() -> None:
    ours, _ = two_clients()
    ours.text += "hello"
    client = ours.doc.client_id
    assert ours.index_of({"item": {"client": client, "clock": 4}, "assoc": 0}) == 4
    assert ours.index_of({"item": {"client": client, "clock": 5}, "assoc": 0}) is None
    assert ours.index_of({"item": {"client": client, "clock": 2}, "assoc": -7}) == 3  # before


def test_users_without_a_cursor_and_odd_names_are_listed_safely() -> None:
    alice, bob = two_clients()
    bob.awareness.set_local_state({"user": {"name": "b" * 500, "color": 7}, "cursor": "?"})
    sync(bob, alice)
    alice.set_user("alice", "#30bced")  # ours is never listed
    [cursor] = alice.remote_cursors()
    assert (len(cursor.name), cursor.color, cursor.anchor, cursor.head) == (64, "7", None, None)
    bob.awareness.set_local_state({"user": {"name": "\x1b[2Jmallory\n", "color": "\x07red"}})
    sync(bob, alice)
    [cursor] = alice.remote_cursors()
    assert (cursor.name, cursor.color) == ("[2Jmallory", "red")  # no escape reaches a terminal
