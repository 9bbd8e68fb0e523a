"""What the editor draws, and when: long lines wrap (or scroll with ``--no-wrap``), a
keystroke redraws only its row, and a typed character leaves before the widget takes it."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import pytest
from editor_harness import EDITOR, cells, insert, text_of, until
from textual import events

from crdtsync import Peer
from crdtsync.cursors import TextCursors

SIZE = (80, 12)
BOB = "#ee6352"


@pytest.mark.parametrize("soft_wrap", [True, False])
async def test_a_long_line_wraps_or_scrolls_sideways(
    editor: ModuleType, room: tuple[Peer, Peer], soft_wrap: bool
) -> None:
    alice, bob = room
    app = editor.EditorApp(alice, "alice", soft_wrap=soft_wrap)
    insert(bob, 0, "x" * 119)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(app.editor.text) == 119, "bob's line")
        await pilot.press("end", "x")  # typing at the end of a line wider than the screen
        await until(pilot, lambda: text_of(bob) == "x" * 120, "alice's x at bob")
        area = app.editor
        if soft_wrap:
            assert (area.wrapped_document.height, area.scroll_offset.x) == (2, 0)
        else:
            assert area.wrapped_document.height == 1
            assert area.scroll_offset.x > 0


def test_the_no_wrap_flag_is_offered() -> None:
    usage = subprocess.run(
        [sys.executable, str(EDITOR), "--help"], capture_output=True, text=True, check=True
    )
    assert "--no-wrap" in usage.stdout


async def test_a_remote_cursor_on_a_wrapped_row_is_drawn_on_its_character(
    editor: ModuleType, room: tuple[Peer, Peer]
) -> None:
    alice, bob = room
    insert(bob, 0, "a" * 100)
    bob_cursors = TextCursors(bob.awareness, bob.doc(), "text")
    bob_cursors.set_user("bob", BOB)
    app = editor.EditorApp(alice, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(app.editor.text) == 100, "bob's line")
        bob_cursors.set_cursor(90, 90)
        await until(pilot, lambda: [c.head for c in app.editor.remote] == [90], "bob's cursor")
        wrapped_at = app.editor.wrapped_document.get_offsets(0)[0]
        assert cells(app, 1, 90 - wrapped_at)[1] == BOB  # on the second row, in his colour
        assert all(cells(app, 0, x)[1] != BOB for x in range(wrapped_at))


async def test_a_keystroke_here_or_remote_redraws_only_its_row(
    editor: ModuleType, room: tuple[Peer, Peer]
) -> None:
    alice, bob = room
    insert(bob, 0, "".join(f"line {n}\n" for n in range(8)))
    app = editor.EditorApp(alice, "alice")
    area = app.editor
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: area.text.startswith("line 0"), "bob's lines")
        await pilot.pause()  # the first full drawing is done
        drawn: list[int] = []
        render_line = area.render_line

        def recording(y: int) -> object:
            drawn.append(y)
            return render_line(y)

        area.render_line = recording  # what Textual calls for each row it draws
        await pilot.press("x")
        await until(pilot, lambda: text_of(bob).startswith("xline 0"), "the x at bob")
        await until(pilot, lambda: bool(drawn), "the x drawn")
        assert set(drawn) == {0}
        drawn.clear()
        insert(bob, len("xline 0\nline 1\nline 2\nline"), "!")
        await until(pilot, lambda: "line!" in area.text, "bob's ! in the editor")
        await until(pilot, lambda: bool(drawn), "bob's ! drawn")
        assert set(drawn) == {3}


async def test_a_remote_edit_between_a_keystroke_sent_and_drawn_keeps_both(
    editor: ModuleType, room: tuple[Peer, Peer]
) -> None:
    alice, bob = room
    app = editor.EditorApp(alice, "alice")
    area = app.editor
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"abc")
        await until(pilot, lambda: text_of(bob) == "abc", "alice's text at bob")
        typing = area.on_key(events.Key("x", "x"))
        typing.send(None)  # up to its turn of the loop: the x is in the text, not the widget
        assert (text_of(alice), area.text) == ("abcx", "abc")
        insert(bob, 0, ">")  # bob's edit lands in that turn
        alice.doc().apply_update(bob.doc().get_update(alice.doc().get_state()))
        with pytest.raises(StopIteration):
            typing.send(None)
        assert area.text == ">abcx"
        assert area.cursor_location == (0, 5)  # after the x
        await until(pilot, lambda: text_of(bob) == ">abcx", "the x at bob")
