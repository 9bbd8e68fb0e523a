"""Users and cursors in the awareness shape of the Yjs editor bindings.

y-codemirror.next and y-prosemirror keep ``{"user": {"name", "color"}, "cursor": {"anchor",
"head"}}`` in each client's awareness state, anchor and head being Yjs relative positions
in their JSON form (``{"type", "tname", "item": {"client", "clock"}, "assoc"}``). A
relative position names the character it sticks to, so a cursor stays put under remote
edits; this module writes ours and reads everyone else's, so Python and browser editors
show each other's cursors. What remote peers send is checked before pycrdt sees it (pycrdt
panics on a position whose item it does not hold yet, as happens when presence outruns
the edit it points into).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pycrdt

from crdtsync.protocol.ymessages import read_state_vector

__all__ = ["RemoteCursor", "TextCursors"]


@dataclass(frozen=True, slots=True)
class RemoteCursor:
    """Another client's user and selection, as indices into the text now (head: the caret;
    None when that client shows no cursor in this text, or one we cannot place yet)."""

    client_id: int
    name: str
    color: str
    anchor: int | None
    head: int | None


class TextCursors:
    """The cursors of one root ``Text`` (``doc.get(name, type=pycrdt.Text)``) in an awareness."""

    def __init__(self, awareness: pycrdt.Awareness, doc: pycrdt.Doc[Any], name: str) -> None:
        self.awareness = awareness
        self.doc = doc
        self.name = name
        self.text = doc.get(name, type=pycrdt.Text)

    # -- ours -------------------------------------------------------------------------------

    def set_user(self, name: str, color: str) -> None:
        """Say who we are: ``color`` as the bindings take it, e.g. ``"#30bced"``."""
        self.awareness.set_local_state_field("user", {"name": name, "color": color})

    def set_cursor(self, anchor: int, head: int) -> None:
        """Publish our selection (anchor == head: a caret), as relative positions."""
        cursor = {"anchor": self.relative_position(anchor), "head": self.relative_position(head)}
        self.awareness.set_local_state_field("cursor", cursor)

    def clear_cursor(self) -> None:
        """Show no cursor (the bindings do this when the editor loses focus)."""
        self.awareness.set_local_state_field("cursor", None)

    def relative_position(self, index: int) -> dict[str, Any]:
        """The JSON form of the position at ``index``, sticking to the character after it."""
        if index < len(self.text):
            return pycrdt.StickyIndex.new(self.text, index, pycrdt.Assoc.AFTER).to_json()
        # The end of the text has no character after it: Yjs names the type itself.
        return {"type": None, "tname": self.name, "item": None, "assoc": 0}

    def sticky(self, index: int) -> pycrdt.StickyIndex:
        """A ``StickyIndex`` at ``index`` that follows its character under remote edits (at
        the end: the last character, or an empty text's start, so text appended by others
        comes after it; a caret does not run along with someone else's typing)."""
        length = len(self.text)
        if length <= index:
            return pycrdt.StickyIndex.new(self.text, length, pycrdt.Assoc.BEFORE)
        return pycrdt.StickyIndex.from_json(self.relative_position(index), self.text)

    # -- theirs -----------------------------------------------------------------------------

    def remote_cursors(self) -> list[RemoteCursor]:
        """Every other client that says who it is, with its selection placed in the text."""
        clocks = read_state_vector(self.doc.get_state())
        cursors = []
        for client_id, state in self.awareness.states.items():
            user = state.get("user") if client_id != self.awareness.client_id else None
            if not isinstance(user, dict):
                continue
            cursor = state.get("cursor")
            anchor = head = None
            if isinstance(cursor, dict):
                anchor = self.index_of(cursor.get("anchor"), clocks)
                head = self.index_of(cursor.get("head"), clocks)
            cursors.append(
                RemoteCursor(
                    client_id,
                    _printable(str(user.get("name", client_id)))[:64],
                    _printable(str(user.get("color", "")))[:32],
                    anchor,
                    head,
                )
            )
        return cursors

    def index_of(self, position: object, clocks: dict[int, int] | None = None) -> int | None:
        """Where a relative position (JSON, from anyone) is in the text now; None if it is
        malformed, in another type, or points at content we do not hold yet."""
        if not isinstance(position, dict):
            return None
        assoc = position.get("assoc", 0)
        item = position.get("item")
        if not isinstance(assoc, int) or isinstance(assoc, bool):
            return None
        checked: dict[str, Any] = {"assoc": 0 if assoc >= 0 else -1}
        if item is not None:
            client, clock = _id(item)
            if clocks is None:
                clocks = read_state_vector(self.doc.get_state())
            if client is None or clock is None or clock >= clocks.get(client, 0):
                return None
            checked["item"] = {"client": client, "clock": clock}
        elif position.get("tname") == self.name and position.get("type") is None:
            checked["tname"] = self.name
        else:
            return None
        return pycrdt.StickyIndex.from_json(checked, self.text).get_index()


def _printable(text: str) -> str:
    """``text`` without control characters: a name from anyone goes on screens and into
    terminals, where an escape sequence would do what its sender wants."""
    return "".join(char for char in text if char.isprintable())


def _id(value: object) -> tuple[int | None, int | None]:
    """A Yjs ID ``{"client", "clock"}``, if it is one."""
    if not isinstance(value, dict):
        return None, None
    client, clock = value.get("client"), value.get("clock")
    if not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**53 for n in (client, clock)
    ):
        return None, None
    return client, clock
