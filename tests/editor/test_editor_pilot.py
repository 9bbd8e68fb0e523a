"""The terminal editor under Textual's own harness (run_test and its Pilot), beside a second
peer that edits the same text from code."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pycrdt
from editor_harness import cells, insert, screen_text, text_of, until
from textual.color import Color
from textual.widgets.text_area import Selection

from crdtsync import Peer
from crdtsync.cursors import TextCursors
from crdtsync.testing import SimNetwork

SIZE = (80, 12)


async def test_typing_deleting_and_selecting_become_minimal_yjs_edits(
    editor: ModuleType, room: tuple[Peer, Peer]
) -> None:
    alice, bob = room
    deltas: list[Any] = []
    text = alice.doc().get("text", type=pycrdt.Text)
    subscription = text.observe(lambda event: deltas.append(event.delta))  # kept: it is live
    app = editor.EditorApp(alice, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"hello", "backspace", "shift+left", "shift+left", "X")
        await until(pilot, lambda: text_of(bob) == "heX", "bob holding alice's text")
        assert app.editor.text == "heX"
    text.unobserve(subscription)
    assert deltas == [
        [{"insert": "h"}],
        *([{"retain": n}, {"insert": c}] for n, c in enumerate("ello", start=1)),
        [{"retain": 4}, {"delete": 1}],  # backspace
        [{"retain": 2}, {"delete": 2}, {"insert": "X"}],  # typing over the selection "ll"
    ]


async def test_lines_break_and_join_on_both_sides(
    editor: ModuleType, room: tuple[Peer, Peer]
) -> None:
    alice, bob = room
    app = editor.EditorApp(alice, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a", "enter", "b", "enter", "c")
        await until(pilot, lambda: text_of(bob) == "a\nb\nc", "three lines at bob")
        del bob.doc().get("text", type=pycrdt.Text)[1:4]  # "\nb\n": the lines join
        await until(pilot, lambda: app.editor.text == "ac", "bob's join")
        assert app.editor.cursor_location == (0, 2)  # still after "c"
        await pilot.press("home", "enter")
        await until(pilot, lambda: text_of(bob) == "\nac", "alice's line break")


async def test_undo_and_redo_take_back_only_own_edits(
    editor: ModuleType, room: tuple[Peer, Peer]
) -> None:
    alice, bob = room
    app = editor.EditorApp(alice, "alice", capture_timeout_millis=0)  # a step per keystroke
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"abc")
        await until(pilot, lambda: text_of(bob) == "abc", "alice's typing at bob")
        insert(bob, 0, "XY")
        insert(bob, 5, "Z")
        await until(pilot, lambda: app.editor.text == "XYabcZ", "bob's edits in the editor")
        await pilot.press("ctrl+z")
        insert(bob, 0, "<")  # while alice undoes
        await pilot.press("ctrl+z", "ctrl+z")
        await until(pilot, lambda: text_of(bob) == "<XYZ", "the undo at bob")
        await pilot.press("ctrl+z")  # nothing of alice's is left to undo: bob's edits stay
        assert app.editor.text == "<XYZ"
        await pilot.press("ctrl+y", "ctrl+y", "ctrl+y")
        await until(pilot, lambda: text_of(bob) == "<XYabcZ", "the redo at bob")
        assert app.editor.text == "<XYabcZ"


async def test_the_local_cursor_stays_on_its_character(
    editor: ModuleType, room: tuple[Peer, Peer]
) -> None:
    alice, bob = room
    app = editor.EditorApp(alice, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"hello world", *["left"] * 5)  # the caret before "w"
        await until(pilot, lambda: text_of(bob) == "hello world", "alice's text at bob")
        insert(bob, 0, "A line above\nand ")
        await until(pilot, lambda: app.editor.text.startswith("A line"), "bob's insert")
        assert app.editor.cursor_location == (1, len("and hello "))
        assert app.editor.document.get_line(1)[app.editor.cursor_location[1]] == "w"
        await pilot.press("shift+right", "shift+right")  # "wo" selected
        insert(bob, len(text_of(bob)), "!")  # after it
        insert(bob, 0, ">")  # before it
        await until(pilot, lambda: app.editor.text.startswith(">"), "bob's second insert")
        assert app.editor.selected_text == "wo"
        await pilot.press("X")  # typing goes where the caret is, not where it was
        await until(pilot, lambda: text_of(bob) == ">A line above\nand hello Xrld!", "the X")


async def test_remote_cursors_and_status_are_drawn(
    editor: ModuleType, room: tuple[Peer, Peer]
) -> None:
    alice, bob = room
    insert(bob, 0, "hello world")
    bob_cursors = TextCursors(bob.awareness, bob.doc(), "text")
    bob_cursors.set_user("bob", "#ee6352")
    app = editor.EditorApp(alice, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.editor.text == "hello world", "bob's text")
        bob_cursors.set_cursor(2, 5)  # "llo" selected, caret after it
        await until(pilot, lambda: [c.head for c in app.editor.remote] == [5], "bob's cursor")
        assert app.status().startswith("linked | alice (you) · bob | 1 peer")
        selection = editor.SELECTION_BASE.blend(Color.parse("#ee6352"), 0.45).hex.lower()
        assert cells(app, 0, 5) == (" ", "#ee6352")  # bob's caret, in his colour
        assert [cells(app, 0, x) for x in (2, 3, 4)] == [(c, selection) for c in "llo"]
        assert cells(app, 0, 1)[1] not in ("#ee6352", selection)
        assert " bob " in line_text(app, 0)
        insert(bob, 0, "12")  # bob's own cursor moves with his text
        bob_cursors.set_cursor(4, 7)
        await until(pilot, lambda: [c.head for c in app.editor.remote] == [7], "bob's move")
        assert cells(app, 0, 7)[1] == "#ee6352"


def line_text(app: Any, y: int) -> str:
    return "".join(segment.text for segment in app.editor.render_line(y))


async def test_with_a_store_edits_made_alone_are_kept_and_merge(
    editor: ModuleType, tmp_path: Path
) -> None:
    network = SimNetwork(seed=12, latency=0.002)
    store = tmp_path / "alice.db"
    alice = Peer(pycrdt.Doc(), room="alone", network=network, store=store)
    async with alice:
        app = editor.EditorApp(alice, "alice")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*"written alone")
            assert app.status() == "connecting | alice (you) | 0 peers"
    async with Peer(pycrdt.Doc(), room="alone", network=network) as bob:
        insert(bob, 0, "bob meanwhile. ")
        alice = Peer(pycrdt.Doc(), room="alone", network=network, store=store)
        async with alice:
            app = editor.EditorApp(alice, "alice")
            assert app.editor.text == "written alone"  # from the store, before any link
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: text_of(bob) == app.editor.text, "the merge")
                assert "bob meanwhile. " in app.editor.text
                assert "written alone" in app.editor.text


async def test_a_remote_edit_is_drawn_and_leaves_the_caret_alone(
    editor: ModuleType, room: tuple[Peer, Peer]
) -> None:
    alice, bob = room
    insert(bob, 0, "one\na longer line\nthree")
    app = editor.EditorApp(alice, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.editor.text.endswith("three"), "bob's text")
        await pilot.press("down", "end")  # the caret at the end of the longest line
        await until(pilot, lambda: "one" in screen_text(app), "the text drawn")
        text = bob.doc().get("text", type=pycrdt.Text)
        with bob.doc().transaction():  # a change that leaves every row as wide as it was
            del text[1:2]
            text.insert(1, "X")
        await until(pilot, lambda: "oXe" in screen_text(app), "bob's change drawn")
        assert app.editor.cursor_location == (1, len("a longer line"))
        insert(bob, 0, "zero\n")  # rows move: all of them are drawn again
        await until(pilot, lambda: "zero" in screen_text(app), "bob's new row drawn")
        assert app.editor.cursor_location == (2, len("a longer line"))


async def test_scrollbars_follow_the_text_others_write(
    editor: ModuleType, room: tuple[Peer, Peer]
) -> None:
    """The widget lays the screen out for a new text size only while a scrollbar shows: the
    scrollbar still follows every change, and appears and goes when it should."""
    alice, bob = room
    app = editor.EditorApp(alice, "alice")
    area = app.editor
    async with app.run_test(size=SIZE) as pilot:
        insert(bob, 0, "a short line")
        await until(pilot, lambda: area.text == "a short line", "bob's line")
        assert not area.show_vertical_scrollbar
        insert(bob, 0, "".join(f"line {n}\n" for n in range(30)))
        await until(pilot, lambda: area.show_vertical_scrollbar, "a vertical scrollbar")
        await until(
            pilot, lambda: area.vertical_scrollbar.window_virtual_size == 31, "its length, 31"
        )
        insert(bob, 0, "".join(f"more {n}\n" for n in range(10)))
        await until(
            pilot, lambda: area.vertical_scrollbar.window_virtual_size == 41, "its length, 41"
        )
        text = bob.doc().get("text", type=pycrdt.Text)
        del text[: len(text) - len("a short line")]
        await until(pilot, lambda: not area.show_vertical_scrollbar, "no scrollbar")
        assert area.scroll_offset.y == 0
        assert " short line" in screen_text(app)  # the caret, on the "a", is drawn apart


async def test_a_remote_edit_right_after_the_caret_moved_keeps_the_move(
    editor: ModuleType, room: tuple[Peer, Peer]
) -> None:
    alice, bob = room
    app = editor.EditorApp(alice, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"alpha", "left", "left", "left")
        await until(pilot, lambda: text_of(bob) == "alpha", "alice's text at bob")
        await pilot.pause()  # the caret's SelectionChanged handled: it is at 2
        app.editor.selection = Selection.cursor((0, 5))  # End; its message not handled yet
        insert(bob, 0, ">")  # bob's edit lands here before that message is
        alice.doc().apply_update(bob.doc().get_update(alice.doc().get_state()))
        assert app.editor.cursor_location == (0, 6)  # after "alpha", as it was moved
        await pilot.press("!")
        await until(pilot, lambda: text_of(bob) == ">alpha!", "the ! where the caret is")
