#!/usr/bin/env python3
"""A terminal editor of a room's shared text, with everyone's cursors and an undo of your own.

    .venv/bin/crdtsync signal --port 8765 &
    .venv/bin/python examples/editor.py --signaling ws://127.0.0.1:8765 --room notes --name alice
    .venv/bin/python examples/editor.py --signaling ws://127.0.0.1:8765 --room notes --name bob

Textual's ``TextArea`` edits the room's ``Text`` "text" (a browser's ``doc.getText("text")``
with ``--dialect y-webrtc``): each keystroke is the minimal Yjs insert or delete, remote
edits land without moving your cursor off its character (a ``pycrdt.StickyIndex``), other
people's cursors and selections show in their colour with their name, Ctrl-Z / Ctrl-Y undo
and redo only your own edits, and the bottom line says who is here and how you are
connected. Long lines wrap at the screen's width (``--no-wrap``: the view scrolls sideways
instead). ``--store FILE`` keeps the text across restarts, and what you wrote while
nobody was reachable merges once someone is. Ctrl-Q quits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import zlib
from collections.abc import Callable
from typing import Any

import pycrdt
from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.app import App, ComposeResult
from textual.color import Color
from textual.document._document import EditResult, Selection
from textual.document._edit import Edit
from textual.geometry import Offset, Size
from textual.reactive import Reactive
from textual.strip import Strip
from textual.widgets import Static, TextArea

from crdtsync.cursors import RemoteCursor, TextCursors
from crdtsync.host_events import PresenceChanged
from crdtsync.peer import DIALECTS, Peer

# The origin of this editor's own transactions: what its undo manager tracks.
LOCAL = "editor"
# y-codemirror.next's demo palette, so a user keeps a colour a browser peer would give.
COLORS = ("#30bced", "#6eeb83", "#ffbc42", "#ecd444", "#ee6352", "#9ac2c9", "#8acb88", "#1be7ff")


SELECTION_BASE = Color(30, 30, 30)  # a remote selection: its colour, darkened


def color_for(name: str) -> str:
    return COLORS[zlib.crc32(name.encode()) % len(COLORS)]


class SharedTextArea(TextArea):
    """A ``TextArea`` whose content is a shared ``pycrdt.Text``, both ways."""

    # Textual lays the whole screen out again and redraws every row whenever a widget's
    # virtual size changes, as it does with each character typed at the end of the longest
    # line, here or by anyone else (~5 ms a keystroke, most of a frame). Of that, a new size
    # changes only the scrollbars (showing or hiding one lays out by itself): set them here.
    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False, repaint=False)

    def watch_virtual_size(self, size: Size) -> None:
        if not self.is_mounted:
            return
        if self.show_vertical_scrollbar:
            self.vertical_scrollbar.window_virtual_size = size.height
        if self.show_horizontal_scrollbar:
            self.horizontal_scrollbar.window_virtual_size = size.width
        # Within a smaller text, as Textual's layout keeps the view.
        self.scroll_x = self.validate_scroll_x(self.scroll_x)
        self.scroll_y = self.validate_scroll_y(self.scroll_y)

    # Textual also redraws every row whenever the selection is set, as each keystroke and each
    # remote edit does (a screen of rows, ~2 ms: time that, on a busy machine, the peer
    # waiting for the keystroke does not get). Only the rows the selection left and reached
    # change, and those an edit touched: watch_selection and edit() redraw just those.
    selection: Reactive[Selection] = Reactive(
        Selection(), init=False, always_update=True, repaint=False
    )

    # Until __init__ is done, selection changes are Textual's setting up: none to keep.
    _applying = True

    def __init__(
        self,
        cursors: TextCursors,
        *,
        send_now: Callable[[], None],
        soft_wrap: bool = True,
        capture_timeout_millis: int = 500,
    ) -> None:
        """``send_now`` hands the peer's pending edits to its links at once (``Peer.send_now``)."""
        super().__init__(str(cursors.text), soft_wrap=soft_wrap, id="text")
        self.cursors = cursors
        self.ytext = cursors.text
        self._send_now = send_now
        # Tracks LOCAL only: remote edits (and those of other editors) are never undone here.
        self.undo_manager = pycrdt.UndoManager(
            scopes=[self.ytext], capture_timeout_millis=capture_timeout_millis
        )
        self.undo_manager.include_origin(LOCAL)
        self.remote: list[RemoteCursor] = []
        # Screen rows (first, last) where remote cursors were drawn, to redraw when they move.
        self._drawn_rows: set[tuple[int, int]] = set()
        self._bracket: tuple[int, int] | None = None  # the matching bracket drawn, if any
        self._applying = False  # applying a remote change: not ours to send
        self._typed: Edit | None = None  # typed and sent, not yet in the widget (on_key)
        self._anchor = cursors.sticky(0)
        self._head = cursors.sticky(0)
        self._published: Any = None
        self._subscription = self.ytext.observe(self._on_text_event)

    def on_unmount(self) -> None:
        self.ytext.unobserve(self._subscription)

    # -- local edits out -------------------------------------------------------------------

    async def on_key(self, event: events.Key) -> None:
        """A typed character leaves for the room before the widget takes it: the data channel
        writes it in the next turn of the loop, and Textual's edit of the widget (~1 ms with
        the messages it posts) waits for that turn, not the keystroke. Other keys, and
        read-only widgets: Textual's own handler (next in the MRO)."""
        if self.read_only or not event.is_printable or event.character is None:
            return
        event.prevent_default()  # TextArea's handler: its part is done here
        event.stop()
        self._restart_blink()  # as TextArea's handler: the caret shows while typing
        start, end = self.selection
        edit = Edit(event.character, start, end, maintain_selection_offset=False)
        self._send_local(edit)
        self._typed = edit
        await asyncio.sleep(0)  # one turn of the loop: the keystroke is written
        if self._typed is edit:  # else a remote edit came meanwhile and took it in first
            self.edit(edit)

    def edit(self, edit: Edit) -> EditResult:
        """Every change of the widget (typing, deleting, pasting, remote edits) comes here."""
        if self._typed is edit:
            self._typed = None  # sent by on_key already
        elif not self._applying:
            self._send_local(edit)
        height = self.wrapped_document.height
        result = super().edit(edit)
        row = edit.top[0]
        if edit.bottom[0] == row == result.end_location[0] and (
            self.wrapped_document.height == height
        ):
            self.refresh_lines(*self._rows_of(row))  # within the rows of one line
        else:
            self.refresh()  # rows came or went: every row below moved
        if not self._applying:
            self.publish_cursor()  # the caret moved with the edit: it follows at once
        return result

    def _send_local(self, edit: Edit) -> None:
        """The minimal Yjs edit, handed to the links before the widget takes it (ahead of
        what Textual's edit queues; a typed character goes out even before that edit runs:
        see on_key). The caret follows once the widget has moved it (publish_cursor)."""
        edit.text = edit.text.replace("\r\n", "\n").replace("\r", "\n")  # Yjs text keeps \n
        top, bottom = sorted((edit.from_location, edit.to_location))
        start = self.document.get_index_from_location(top)
        end = self.document.get_index_from_location(bottom)
        with self.cursors.doc.transaction(origin=LOCAL):
            if end > start:
                del self.ytext[start:end]
            if edit.text:
                self.ytext.insert(start, edit.text)
        if not edit.maintain_selection_offset:  # the caret goes to the end of the new text
            # (kept at once: a remote edit may come before the widget has the caret there)
            self._anchor = self._head = self.cursors.sticky(start + len(edit.text))
        self._send_now()

    def action_undo(self) -> None:
        self.undo_manager.undo()

    def action_redo(self) -> None:
        self.undo_manager.redo()

    def watch_selection(self, previous: Selection, selection: Selection) -> None:
        """Keep our selection as sticky indices the moment it moves (Textual calls this as the
        selection is set). Not at SelectionChanged: that message waits in the queue, and a
        remote change applied before it is handled put the caret back where it was, so that
        what was typed next landed there. Then redraw the rows it left and reached."""
        if not self._applying:
            anchor = self.document.get_index_from_location(selection.start)
            head = self.document.get_index_from_location(selection.end)
            self._anchor, self._head = self.cursors.sticky(anchor), self.cursors.sticky(head)
        if not self.is_mounted:
            return
        spans = [(previous.start[0], previous.end[0]), (selection.start[0], selection.end[0])]
        bracket = self.matching_bracket_location  # Textual's watcher, called first, found it
        spans += [(location[0], location[0]) for location in (self._bracket, bracket) if location]
        self._bracket = bracket
        for low, high in spans:
            first, last = self._screen_rows(*sorted((low, high)))
            self.refresh_lines(first, last - first + 1)

    def on_text_area_selection_changed(self, message: TextArea.SelectionChanged) -> None:
        self.publish_cursor()

    def publish_cursor(self) -> None:
        """Tell the room where our selection is, at once: after an edit (just sent), not a
        batching window later."""
        anchor = self.document.get_index_from_location(self.selection.start)
        head = self.document.get_index_from_location(self.selection.end)
        cursor = (
            self.cursors.relative_position(anchor),
            self.cursors.relative_position(head),
        )
        if cursor != self._published:  # unchanged: no awareness traffic
            self._published = cursor
            self.cursors.set_cursor(anchor, head)
            self._send_now()

    # -- remote edits in -------------------------------------------------------------------

    def _on_text_event(self, event: pycrdt.TextEvent) -> None:
        if event.transaction.origin == LOCAL:
            return  # already in the widget
        self._applying = True
        try:
            if self._typed is not None:  # typed, in the text, not yet in the widget: first
                typed, self._typed = self._typed, None
                location = (typed.from_location, typed.to_location)
                self.edit(_RemoteEdit(typed.text, *location, maintain_selection_offset=True))
            index = 0
            for change in event.delta:
                if "retain" in change:
                    index += change["retain"]
                elif "delete" in change:
                    self._replace("", index, index + change["delete"])
                elif "insert" in change:
                    self._replace(change["insert"], index, index)
                    index += len(change["insert"])
            # Our sticky indices moved with their characters: the caret goes where they are
            # (they stay as they are: new ones cannot be made inside pycrdt's observer).
            txn = event.transaction
            anchor, head = self._anchor.get_index(txn), self._head.get_index(txn)
            location = self.document.get_location_from_index
            selection = Selection(location(anchor), location(head))
            if selection != self.selection:  # setting it scrolls and redraws, even to itself
                self.selection = selection
        finally:
            self._applying = False
        self.call_later(self.refresh_remote)  # remote cursors moved too (read after commit)

    def _replace(self, text: str, start: int, end: int) -> None:
        location = self.document.get_location_from_index
        self.edit(_RemoteEdit(text, location(start), location(end), maintain_selection_offset=True))

    # -- remote cursors --------------------------------------------------------------------

    def refresh_remote(self) -> None:
        """Redraw the rows where remote cursors were and where they are now, if any moved (a
        whole redraw costs milliseconds, and others' cursors move with every keystroke)."""
        remote = self.cursors.remote_cursors()
        if remote == self.remote:
            return
        rows = self._remote_rows(remote)
        for low, high in self._drawn_rows | rows:
            self.refresh_lines(low, high - low + 1)
        self.remote, self._drawn_rows = remote, rows

    def _remote_rows(self, remote: list[RemoteCursor]) -> set[tuple[int, int]]:
        """The first and last screen row of each cursor's selection (its caret's: its label)."""
        location = self.document.get_location_from_index
        rows: set[tuple[int, int]] = set()
        for cursor in remote:
            if cursor.head is not None:
                anchor = cursor.head if cursor.anchor is None else cursor.anchor
                rows.add(
                    self._screen_rows(*sorted((location(anchor)[0], location(cursor.head)[0])))
                )
        return rows

    def _rows_of(self, line: int) -> tuple[int, int]:
        """The first screen row of a document line (before scrolling) and how many rows it
        takes: one, or its wrapped sections. A line gone since is taken as the last one."""
        line = min(line, self.document.line_count - 1)
        first = self.wrapped_document.location_to_offset((line, 0)).y
        return first, len(self.wrapped_document.get_offsets(line)) + 1

    def _screen_rows(self, low: int, high: int) -> tuple[int, int]:
        """The first and last screen row (before scrolling) of document lines low to high."""
        last_first, rows = self._rows_of(high)
        return self._rows_of(low)[0], last_first + rows - 1

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        row = y + self.scroll_offset.y
        if not self.remote or row >= self.wrapped_document.height:
            return strip
        # This row shows columns first to last of a line: all of it, or one wrapped section
        # (the last section also shows the line's end, where a caret can be).
        line_index, first = self.wrapped_document.offset_to_location(Offset(0, row))
        line = self.document.get_line(line_index)
        wraps = [
            offset for offset in self.wrapped_document.get_offsets(line_index) if offset > first
        ]
        last = wraps[0] if wraps else len(line)
        line_start = self.document.get_index_from_location((line_index, 0))
        row_start, row_end = line_start + first, line_start + last
        for cursor in self.remote:
            if cursor.head is None or not cursor.color:
                continue
            try:
                color = Color.parse(cursor.color)
            except Exception:  # a colour Textual cannot read: shown without one
                continue
            anchor = cursor.head if cursor.anchor is None else cursor.anchor
            low, high = sorted((anchor, cursor.head))
            if low < row_end + (not wraps) and high > row_start:  # the selection crosses it
                start, end = max(low, row_start) - line_start, min(high, row_end) - line_start
                strip = _paint(
                    strip,
                    self._x(line, first, start),
                    self._x(line, first, end),
                    Style(bgcolor=SELECTION_BASE.blend(color, 0.45).rich_color),
                )
            if row_start <= cursor.head < row_end or (cursor.head == row_end and not wraps):
                x = self._x(line, first, cursor.head - line_start)
                strip = _paint(strip, x, x + 1, Style(bgcolor=color.rich_color, color="black"))
                label = f" {cursor.name} "
                label_x = max(self._x(line, first, last) + 2, x + 2)
                strip = _label(
                    strip, label_x, label, Style(bgcolor=color.rich_color, color="black")
                )
        return strip

    def _x(self, line: str, first: int, column: int) -> int:
        """The widget cell of a column of a line whose row starts at column ``first``."""
        return self.gutter_width + cell_len(line[first:column]) - self.scroll_offset.x


class _RemoteEdit(Edit):
    """A remote change: the widget's selection stays as it is until the whole delta is in
    (the sticky indices then say where it goes), and the column kept for up and down
    movement stays the user's. Textual's own ``after`` sets the selection, which scrolls
    and redraws: most of a remote keystroke's cost in the widget."""

    def after(self, text_area: TextArea) -> None:
        """Nothing: ``SharedTextArea.edit`` redraws the rows the edit touched."""


def _paint(strip: Strip, start: int, end: int, style: Style) -> Strip:
    """``strip`` with ``style`` laid over its cells ``start`` to ``end``."""
    start, end = max(start, 0), min(end, strip.cell_length)
    if start >= end:
        return strip
    before, middle, after = strip.divide([start, end, strip.cell_length])
    painted = Strip(
        [Segment(text, (old or Style()) + style, control) for text, old, control in middle],
        middle.cell_length,
    )
    return Strip.join([before, painted, after])


def _label(strip: Strip, x: int, label: str, style: Style) -> Strip:
    """``strip`` with ``label`` written over its cells from ``x`` on, cut to fit."""
    room = strip.cell_length - max(x, 0)
    if x < 0 or room <= 0:
        return strip
    label = label[:room]
    before, _, after = strip.divide([x, x + len(label), strip.cell_length])
    return Strip.join([before, Strip([Segment(label, style)], len(label)), after])


class EditorApp(App[None]):
    """The editor of ``peer``'s shared text; the caller starts and closes the peer."""

    CSS = """
    #text { height: 1fr; border: none; }
    #status { height: 1; background: $panel; color: $text; }
    """

    def __init__(
        self,
        peer: Peer,
        name: str,
        *,
        text: str = "text",
        soft_wrap: bool = True,
        capture_timeout_millis: int = 500,
    ) -> None:
        """``soft_wrap``: long lines wrap at the screen's width (else the view scrolls
        sideways, and each scroll redraws every row)."""
        super().__init__()
        self.peer = peer
        self.user = name
        self.cursors = TextCursors(peer.awareness, peer.doc(), text)
        self.cursors.set_user(name, color_for(name))
        self.editor = SharedTextArea(
            self.cursors,
            send_now=peer.send_now,
            soft_wrap=soft_wrap,
            capture_timeout_millis=capture_timeout_millis,
        )
        self._events = peer.events()
        self._status = ""

    def compose(self) -> ComposeResult:
        yield self.editor
        yield Static(id="status")

    def on_mount(self) -> None:
        self.editor.focus()
        self.editor.publish_cursor()
        self.call_after_refresh(self.update_status)  # once the screen is up (else unseen)
        self.run_worker(self._react(), exclusive=True)

    async def on_unmount(self) -> None:
        await self._events.aclose()  # the peer may outlive its editor

    async def _react(self) -> None:
        """Redraw on what the peer reports; no polling."""
        async for event in self._events:
            if isinstance(event, PresenceChanged):
                self.editor.refresh_remote()
            self.update_status()

    def status(self) -> str:
        """``linked | alice (you) · bob · carol | 2 peers``: the state, then who is here."""
        others = [cursor.name for cursor in self.editor.remote]
        count = len(self.peer.peers)
        who = " · ".join([f"{self.user} (you)", *others])
        return f"{self.peer.connection.value} | {who} | {count} peer{'s' * (count != 1)}"

    def update_status(self) -> None:
        status = self.status()
        if status != self._status:  # an update lays the whole screen out again
            self._status = status
            self.query_one("#status", Static).update(status)


async def run(args: argparse.Namespace) -> None:
    host_addresses = tuple(args.host_address) if args.host_address else None
    peer = Peer(
        pycrdt.Doc(),
        room=args.room,
        signaling=args.signaling,
        password=args.password,
        store=args.store,
        dialect=args.dialect,
        host_addresses=host_addresses,
    )
    async with peer:
        await EditorApp(peer, args.name, soft_wrap=args.wrap).run_async()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signaling", required=True, help="signaling server URL (ws://...)")
    parser.add_argument("--room", required=True)
    parser.add_argument("--name", required=True, help="your name, as others see it")
    parser.add_argument("--password", help="the room's password")
    parser.add_argument("--store", help="a file that keeps the text across restarts")
    parser.add_argument("--dialect", choices=DIALECTS, default="crdtsync")
    parser.add_argument("--host-address", action="append", help="ICE host address (repeat)")
    parser.add_argument(
        "--no-wrap", dest="wrap", action="store_false", help="scroll long lines, not wrap them"
    )
    parser.add_argument("--log", help="write crdtsync's log to this file (the screen is taken)")
    args = parser.parse_args()
    if args.log:
        logging.basicConfig(filename=args.log, level=logging.INFO)
    else:
        logging.getLogger().addHandler(logging.NullHandler())  # no warning over the screen
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
