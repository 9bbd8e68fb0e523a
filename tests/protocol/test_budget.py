"""The token bucket behind every flood guard, in virtual time."""

from __future__ import annotations

import pytest

from crdtsync.errors import ConfigError
from crdtsync.protocol.budget import TokenBucket


def test_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.05)  # half a token back
    assert bucket.take(0.1)
    assert not bucket.take(0.1)


def test_saving_up_stops_at_the_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=2, now=0.0)
    assert bucket.take(0.0, amount=2)
    assert bucket.take(100.0, amount=2)
    assert not bucket.take(100.0)


def test_amounts_and_a_clock_that_goes_back() -> None:
    bucket = TokenBucket(rate=1000.0, burst=4096, now=5.0)
    assert bucket.take(5.0, amount=4096)
    assert not bucket.take(4.0, amount=1)  # time never runs backwards into tokens
    assert bucket.take(5.5, amount=500)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 5), (1.0, 0.5)])
def test_bad_settings(rate: float, burst: float) -> None:
    with pytest.raises(ConfigError):
        TokenBucket(rate, burst)
