"""Helpers of the editor tests: wait on the app without fixed sleeps."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

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
