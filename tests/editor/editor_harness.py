"""Helpers of the editor tests: wait on the app without fixed sleeps, read what it draws."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from crdtsync import Peer

TIMEOUT = 10.0
EDITOR = Path(__file__).parent.parent.parent / "examples" / "editor.py"
INTEROP = Path(__file__).parent.parent / "interop"
if str(INTEROP) not in sys.path:  # the interop tests' helpers: require(), Chromium, bundles
    sys.path.append(str(INTEROP))


async def until(pilot: object, predicate: Callable[[], bool], what: str) -> None:
    """Let the app run until ``predicate()`` holds; fail naming ``what`` after TIMEOUT."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not predicate():
                await pilot.pause()  # type: ignore[attr-defined]
    except TimeoutError:
        pytest.fail(f"{what} not reached within {TIMEOUT} s")


def text_of(peer: Peer) -> str:
    return str(peer.doc().get("text", type=pycrdt.Text))


def insert(peer: Peer, index: int, words: str) -> None:
    peer.doc().get("text", type=pycrdt.Text).insert(index, words)


def cells(app: Any, y: int, column: int) -> tuple[str, str | None]:
    """The character and background colour (hex) drawn at a text column of a screen line."""
    x = app.editor.gutter_width + column
    position = 0
    for segment in app.editor.render_line(y):
        if position <= x < position + len(segment.text):
            bgcolor = segment.style.bgcolor if segment.style is not None else None
            triplet = bgcolor.triplet if bgcolor is not None else None
            return segment.text[x - position], triplet.hex if triplet is not None else None
        position += len(segment.text)
    raise AssertionError(f"no cell {x} on line {y}")


def screen_text(app: Any) -> str:
    """What the screen shows now, as Textual would draw it (an SVG of its cells)."""
    return str(app.export_screenshot()).replace("&#160;", " ")
