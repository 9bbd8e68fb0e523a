"""ICE check pacing: aioice's 20 ms between checks becomes 5 ms, and a check's retries come
at most a second apart for as long as a dial lasts; nothing else changes."""

from __future__ import annotations

import asyncio
import contextlib
import inspect

import aioice.ice
import aioice.stun

from crdtsync.transport import ice_pacing


def test_only_the_check_pacing_sleep_is_shortened() -> None:
    assert ice_pacing.paced(ice_pacing.AIOICE_TA) == ice_pacing.CHECK_PACING == 0.005
    assert ice_pacing.paced(5.0) == 5.0  # consent checks and the rest keep their timing
    assert ice_pacing.paced(0.0) == 0.0


def test_install_is_idempotent_and_delegates_the_rest_of_asyncio() -> None:
    ice_pacing.install()
    paced = vars(aioice.ice)["asyncio"]
    ice_pacing.install()
    assert vars(aioice.ice)["asyncio"] is paced
    assert paced.Queue is asyncio.Queue
    assert paced.create_task is asyncio.create_task


def test_aioice_still_paces_with_the_sleep_we_shorten() -> None:
    """A canary: when aioice changes its pacing, this says the shortcut no longer applies."""
    source = inspect.getsource(aioice.ice.Connection.connect)
    assert f"asyncio.sleep({ice_pacing.AIOICE_TA})" in source


class _Recorder:
    """Where a transaction sends: it counts the sends."""

    def __init__(self) -> None:
        self.sent = 0

    def send_stun(self, message: aioice.stun.Message, addr: tuple[str, int]) -> None:
        self.sent += 1


async def test_a_check_is_retried_at_most_a_second_apart_past_the_connect_timeout() -> None:
    request = aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST)
    recorder = _Recorder()
    transaction = ice_pacing.SteadyTransaction(request, ("127.0.0.1", 9), recorder)
    delays = []
    for _ in range(8):  # aioice doubles the stored wait after each send
        delays.append(transaction._Transaction__timeout_delay)  # type: ignore[attr-defined]
        transaction._Transaction__timeout_delay *= 2  # type: ignore[attr-defined]
    assert delays == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    lifetime = 0.5 + 1.0 * ice_pacing.CHECK_RETRIES
    assert lifetime > 15.0  # outlives our default connect timeout, as STUN's 63.5 s did
    consent = ice_pacing.SteadyTransaction(request, ("127.0.0.1", 9), recorder, retransmissions=0)
    async with asyncio.timeout(5):
        with contextlib.suppress(aioice.stun.TransactionTimeout):
            await consent.run()  # a consent check (no retries) still fails after one wait
    assert recorder.sent == 1


def test_install_swaps_only_the_transaction_of_aioices_ice_module() -> None:
    ice_pacing.install()
    stun = vars(aioice.ice)["stun"]
    assert stun.Transaction is ice_pacing.SteadyTransaction
    assert stun.Message is aioice.stun.Message
    assert aioice.stun.Transaction is not ice_pacing.SteadyTransaction  # TURN keeps STUN's


def test_aioice_still_doubles_the_wait_we_cap() -> None:
    """A canary: when aioice renames the wait or stops doubling it, the cap no longer applies."""
    assert "self.__timeout_delay *= 2" in inspect.getsource(aioice.stun.Transaction)
    assert "stun.Transaction(" in inspect.getsource(aioice.ice.StunProtocol.request)
