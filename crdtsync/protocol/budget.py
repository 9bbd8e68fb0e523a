"""A token bucket: how much a peer may send per second, with bursts, in the caller's time.

Every flood guard of the project (link cores, the signaling cores' rate limits) is one of
these: ``rate`` tokens a second up to ``burst``, one (or ``amount``) taken per message.
Sans I/O: the caller passes ``now``.
"""

from __future__ import annotations

from crdtsync.errors import ConfigError

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full at ``now``."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        if rate <= 0 or burst < 1:
            raise ConfigError(f"need rate > 0 and burst >= 1 (got {rate:g}, {burst:g})")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def level(self, now: float) -> float:
        """The tokens there are at ``now`` (nothing spent)."""
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = max(self._at, now)
        return self._tokens

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Spend ``amount`` tokens if there are that many at ``now``; else False, nothing spent."""
        if self.level(now) < amount:
            return False
        self._tokens -= amount
        return True
