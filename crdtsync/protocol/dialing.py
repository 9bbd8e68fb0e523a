"""Whom a peer dials and when, sans I/O: the mesh's dial policy, with its backoff.

In a room that fits in ``max_conns`` the smaller id dials (so two peers never dial each
other); a larger room is a partial mesh: the ring successor, which keeps the room connected
whatever else is picked, plus a seeded random subset that stays stable while membership
lasts. A failed or lost link is redialed after a jittered, doubling delay, longer for a peer
whose link was closed for bad input. The delay paces attempts, not the gaps between them: it
counts from when a failed dial started, so a dial that spent its whole connect timeout on a
dead network is followed at once by the next, and the link returns as soon as the network
does, with no more dials than the timeout allows. The mesh (``mesh_dialing.py``) asks
``due(now, ...)``, dials, and says ``dialed``.
"""

from __future__ import annotations

import random
from collections.abc import Collection

__all__ = ["VIOLATION_PENALTY", "DialPolicy"]

VIOLATION_PENALTY = 3  # doublings of the redial delay per violation: 0.1 s becomes 0.8 s


class DialPolicy:
    """One peer's choice of remotes to dial, and when each may be dialed again (settings as
    ``MeshSettings`` checks them)."""

    def __init__(
        self,
        local_id: str,
        *,
        max_conns: int,
        reconnect_base: float,
        reconnect_cap: float,
        rng: random.Random,
    ) -> None:
        self.local_id = local_id
        self.max_conns = max_conns
        self.reconnect_base = reconnect_base
        self.reconnect_cap = reconnect_cap
        self._rng = rng
        self._attempts: dict[str, int] = {}
        self._next_attempt: dict[str, float] = {}
        self._dialed_at: dict[str, float] = {}  # when the dial under way started
        self._priorities: dict[str, float] = {}
        self._violations: dict[str, int] = {}  # links we closed for a peer's bad input

    def wanted(self, members: Collection[str]) -> tuple[list[str], int]:
        """Peers to be linked with, most wanted first, and how many of them are a must."""
        others = sorted(members)
        if len(others) <= self.max_conns:
            # Full mesh: the smaller id dials, so two peers never dial each other.
            return [remote for remote in others if remote > self.local_id], len(others)
        successor = next((remote for remote in others if remote > self.local_id), others[0])
        rest = sorted(
            (remote for remote in others if remote != successor),
            key=lambda remote: self._priorities.setdefault(remote, self._rng.random()),
        )
        return [successor, *rest], 1

    def due(
        self, now: float, members: Collection[str], busy: Collection[str]
    ) -> tuple[list[str], float | None]:
        """Whom to dial at ``now`` (``busy``: linked or being dialed), and when to ask again
        (the end of the earliest backoff that held a dial back; None: nothing waits)."""
        wanted, musts = self.wanted(members)
        count = len(busy)
        dials: list[str] = []
        retry_at: float | None = None
        for index, remote in enumerate(wanted):
            if remote in busy:
                continue
            if index >= musts and count >= self.max_conns:
                break
            next_attempt = self._next_attempt.get(remote, 0.0)
            if next_attempt > now:
                retry_at = next_attempt if retry_at is None else min(retry_at, next_attempt)
                continue
            dials.append(remote)
            count += 1
        return dials, retry_at

    def members_changed(self, members: Collection[str]) -> None:
        """Forget the backoff of peers that left: one that comes back is dialed at once."""
        for remote in [remote for remote in self._next_attempt if remote not in members]:
            self._attempts.pop(remote, None)
            del self._next_attempt[remote]

    def dialed(self, remote: str, now: float) -> None:
        """A dial to ``remote`` started at ``now`` (its backoff, if it fails, counts from
        here)."""
        self._dialed_at[remote] = now

    def linked(self, remote: str) -> None:
        """A link to ``remote`` opened: its backoff starts over."""
        self._attempts.pop(remote, None)
        self._next_attempt.pop(remote, None)
        self._dialed_at.pop(remote, None)

    def violated(self, remote: str) -> None:
        """We closed ``remote``'s link for bad input: it waits longer from now on."""
        self._violations[remote] = self._violations.get(remote, 0) + 1

    def failed(self, remote: str, now: float) -> None:
        """A dial failed or a link was lost at ``now``: back off before the next try, counted
        from the start of the dial that failed (from ``now`` for a lost link)."""
        attempts = self._attempts.get(remote, 0) + 1
        self._attempts[remote] = attempts
        # A peer that sent bad input waits longer, and never earns a quick redial back.
        exponent = attempts - 1 + VIOLATION_PENALTY * self._violations.get(remote, 0)
        delay = min(self.reconnect_cap, self.reconnect_base * 2.0**exponent)
        started = min(now, self._dialed_at.pop(remote, now))
        self._next_attempt[remote] = started + delay * (0.5 + self._rng.random() / 2)
