"""ICE check pacing: aioice's 20 ms between checks becomes 5 ms, and nothing else changes."""

from __future__ import annotations

import asyncio
import inspect

import aioice.ice

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
