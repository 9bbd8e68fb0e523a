"""An asyncio event loop on virtual time, for fast and reproducible simulations.

The loop's clock moves only when every task waits: it then jumps to the next timer, so a
minute of heartbeats, backoff and simulated latency runs in milliseconds, and runs driven
only by timers (the simulated network) replay exactly. Real sockets still work (they are
polled), but their timing is real; code that reads ``time.monotonic()`` directly is not
affected.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["VirtualClockLoop", "close_loop", "new_loop", "run"]

T = TypeVar("T")

# With no timer pending and nothing ready, only real I/O (a thread handing back work, a
# socket) can wake the loop: wait this long in real time before calling it a deadlock.
DEADLOCK_AFTER = 5.0


class _VirtualSelector(selectors.DefaultSelector):
    """Polls real I/O without blocking; a wait for a timer advances the virtual clock."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            ready = super().select(DEADLOCK_AFTER)
            if not ready:
                raise RuntimeError(
                    "virtual clock deadlock: no timer and no ready I/O; every task waits on "
                    "something that nothing will ever do"
                )
            return ready
        if timeout > 0:
            self._loop.advance(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock only moves when every task is waiting: then it jumps."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        """Virtual seconds since the loop was made."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward to the next timer (what the selector asks for)."""
        deadline = self._now + seconds
        # Land exactly on the earliest timer's deadline: no float drift between runs.
        scheduled = getattr(self, "_scheduled", None)
        if scheduled:
            deadline = max(self._now, min(deadline, scheduled[0].when()))
        self._now = deadline


def new_loop() -> VirtualClockLoop:
    """A fresh loop, for callers that drive ``run_until_complete`` step by step."""
    return VirtualClockLoop()


def close_loop(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Cancel and await leftover tasks, close the loop; returns the leftovers' names."""
    leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    return [repr(task.get_coro()) for task in leftovers]


def run(coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
    """Like ``asyncio.run`` on a fresh ``VirtualClockLoop``; ``timeout`` is in virtual seconds.

    A task still pending when ``coro`` returns is a leak: it is cancelled and reported
    as a RuntimeError, so tests notice.
    """
    loop = new_loop()
    try:
        if timeout is None:
            result = loop.run_until_complete(coro)
        else:
            result = loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        leftovers = close_loop(loop)
    if leftovers:
        raise RuntimeError(f"tasks left pending after the run: {', '.join(leftovers)}")
    return result
