"""The batching window, in virtual time: at once after a quiet spell, widening under a stream."""

from __future__ import annotations

import pytest

from crdtsync.errors import ConfigError
from crdtsync.protocol.batching import BATCH_WINDOW_GROWTH, BatchWindow


def test_a_lone_edit_is_due_at_once() -> None:
    window = BatchWindow(0.010)
    assert window.due(5.0) == 5.0
    window.sent(5.0, waited=False)
    assert window.due(5.020) == 5.020  # the window closed before this edit


def test_a_steady_stream_doubles_the_window_up_to_its_cap_and_a_pause_resets_it() -> None:
    window = BatchWindow(0.010)
    window.sent(0.0, waited=False)
    now, waits = 0.0, []
    for _ in range(6):  # an edit right behind each send
        due = window.due(now + 0.001)
        waits.append(round(due - now, 6))
        now = due
        window.sent(now, waited=True)
    assert waits == [0.01, 0.02, 0.04, 0.08, 0.08, 0.08]
    assert window.window == BATCH_WINDOW_GROWTH * 0.010
    later = now + 1.0  # a quiet spell: due at once, and the next window is the base again
    assert window.due(later) == later
    window.sent(later, waited=False)
    assert window.due(later + 0.001) == pytest.approx(later + 0.010)


def test_no_window_sends_every_tick() -> None:
    window = BatchWindow(0.0)
    window.sent(1.0, waited=True)
    assert window.due(1.0) == 1.0


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="batch_window must be >= 0"):
        BatchWindow(-0.1)
