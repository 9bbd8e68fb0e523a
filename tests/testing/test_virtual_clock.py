"""The virtual clock: time jumps to the next timer, runs replay, deadlocks are reported."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from crdtsync.testing.virtual_clock import close_loop, new_loop, run


def test_an_hour_passes_at_once() -> None:
    async def sleep_an_hour() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - start

    started = time.monotonic()
    assert run(sleep_an_hour()) == 3600.0
    assert time.monotonic() - started < 2.0  # a property of the loop, not a benchmark


def test_timers_fire_in_deadline_order_and_replay() -> None:
    def fired(seed: int) -> list[tuple[float, int]]:
        async def schedule() -> list[tuple[float, int]]:
            loop = asyncio.get_running_loop()
            rng = random.Random(seed)
            log: list[tuple[float, int]] = []
            for index in range(300):
                loop.call_later(rng.uniform(0, 10), lambda i=index: log.append((loop.time(), i)))
            await asyncio.sleep(11)
            return log

        return run(schedule())

    first = fired(3)
    assert [when for when, _ in first] == sorted(when for when, _ in first)
    assert first == fired(3)
    assert first != fired(4)


def test_wait_for_times_out_at_the_virtual_deadline() -> None:
    async def wait() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 5)
        return loop.time()

    assert run(wait()) == 5.0


@pytest.mark.timeout(30)
def test_a_deadlock_is_reported_not_hung() -> None:
    async def stuck() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(RuntimeError, match="virtual clock deadlock"):
        run(stuck())


def test_real_loopback_sockets_still_work() -> None:
    async def echo() -> bytes:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readexactly(5))
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        data = await asyncio.wait_for(reader.readexactly(5), 10)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return data

    assert run(echo()) == b"hello"


def test_leftover_tasks_are_reported() -> None:
    async def leaks() -> None:
        asyncio.get_running_loop().create_task(asyncio.sleep(100))

    with pytest.raises(RuntimeError, match="left pending"):
        run(leaks())


def test_stepwise_driving_with_new_loop() -> None:
    loop = new_loop()
    loop.run_until_complete(asyncio.sleep(2))
    loop.run_until_complete(asyncio.sleep(3))
    assert loop.time() == 5.0
    assert close_loop(loop) == []
