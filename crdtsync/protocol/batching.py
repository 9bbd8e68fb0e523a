"""When a peer sends what its replica queued: at once after a quiet spell, else when the
batching window closes, a window that widens while a steady stream of edits goes on.

Each data-channel message costs aiortc ~0.4 ms of CPU (DTLS and SCTP in Python), far more
than merging updates does, so under load merged updates keep convergence fast, while a lone
edit is not delayed at all. Sans-I/O: the mesh owns the clock and the timer.
"""

from __future__ import annotations

from crdtsync.errors import ConfigError

__all__ = ["BATCH_WINDOW_GROWTH", "DEFAULT_BATCH_WINDOW", "BatchWindow"]

# The figures behind both: `crdtsync bench convergence` (see the README's Performance).
DEFAULT_BATCH_WINDOW = 0.010  # seconds
BATCH_WINDOW_GROWTH = 8  # a steady stream widens the window up to this many times


class BatchWindow:
    """One peer's batching window: ``due`` says when to send, ``sent`` records a send."""

    def __init__(self, base: float = DEFAULT_BATCH_WINDOW) -> None:
        if base < 0:
            raise ConfigError(f"batch_window must be >= 0 (got {base})")
        self.base = base
        self.window = base
        self._last_send = float("-inf")

    def due(self, now: float) -> float:
        """When what was queued at ``now`` should go: ``now`` itself after a quiet spell,
        else when the window since the last send closes."""
        return max(now, self._last_send + self.window)

    def sent(self, now: float, *, waited: bool) -> None:
        """Something went out at ``now``. If it had ``waited`` for the window, a stream goes
        on: the next window doubles (up to the cap); if not, it is back to ``base``."""
        self._last_send = now
        self.window = min(2 * self.window, BATCH_WINDOW_GROWTH * self.base) if waited else self.base
