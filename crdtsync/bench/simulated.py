"""What the benchmarks on the simulated network share: a virtual clock, and the heap held.

``scale`` and ``workspace`` weigh rooms of the in-memory ``SimNetwork`` with ``tracemalloc``
on a virtual clock (no figure depends on how busy the machine is); the simulated transport's
own allocations (its pipes, and the link objects standing in for aiortc's) are left out, so
the figures are the engine's own whatever carries the bytes.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from crdtsync.testing import virtual_clock
from crdtsync.transport import memory

__all__ = ["KIB", "in_virtual_time", "traced"]

T = TypeVar("T")

KIB = 1024
SIM_TRANSPORT = tracemalloc.Filter(False, memory.__file__)


async def in_virtual_time(scenario: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
    """Run ``scenario()`` on a virtual clock, in a thread (this loop's clock is real);
    ``timeout`` is in virtual seconds."""
    return await asyncio.to_thread(virtual_clock.run, scenario(), timeout=timeout)


@contextmanager
def traced() -> Iterator[Callable[[], int]]:
    """Trace allocations meanwhile; yields what measures the heap traced so far."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        yield _heap
    finally:
        if started:
            tracemalloc.stop()


def _heap() -> int:
    """Bytes traced and still held, the simulated transport's own allocations left out."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces([SIM_TRANSPORT])
    return sum(trace.size for trace in snapshot.traces)
