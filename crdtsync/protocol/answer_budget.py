"""Which link-setup offers a peer acts on, sans I/O: budgets, freshness, candidate caps.

Every offer we answer costs a peer connection, a UDP socket and a message against our own
rate at the signaling server; every dial costs the same. Both connectors (native
``transport/webrtc.py`` and ``transport/ywebrtc.py`` through ``protocol/ywebrtc_room.py``) ask
an ``AnswerBudget`` before building one, so a room member that floods offers holds one
pending answer and gets a few answers a second, and nobody else's offers spend our rate.
``ReplayGuard`` refuses stale and repeated native offers; ``cap_candidates`` bounds how many
remote candidates (each a STUN check to a port the sender chose) one description brings.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass

from crdtsync.errors import ConfigError
from crdtsync.protocol.budget import TokenBucket

__all__ = [
    "DEFAULT_MAX_CANDIDATES",
    "Admitted",
    "AnswerBudget",
    "Refused",
    "ReplayGuard",
    "cap_candidates",
]

# A peer has a host candidate per interface, a server-reflexive and a relay one per STUN or
# TURN server: a handful. 16 leaves room for multi-homed hosts; each one past it is a STUN
# check (aioice sends up to 5 per pair) to an address and port the sender picked.
DEFAULT_MAX_CANDIDATES = 16
_CANDIDATE_LINE = "a=candidate:"


@dataclass(frozen=True, slots=True)
class Admitted:
    """Build the connection and answer; ``ticket`` is released by ``settled`` once it opens
    or fails. ``replaces``: the ticket of the same remote's pending answer, to give up."""

    ticket: int
    replaces: int | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Drop the offer without building anything: ``reason`` says which limit."""

    reason: str


@dataclass(frozen=True, slots=True)
class _Pending:
    remote: str
    answer: bool


class AnswerBudget:
    """Pending answers and dials, and how often we answer, per remote and in all."""

    def __init__(
        self,
        *,
        # Dials plus answers in flight: a mesh of max_conns=20 dialing at once, plus a dozen
        # newcomers answered meanwhile; each is an RTCPeerConnection and a UDP socket.
        max_pending: int = 32,
        # Answers may take 3/4 of it: a flood of offers never leaves us unable to dial.
        max_pending_answers: int = 24,
        # An honest peer offers once per dial and redials with backoff from 0.1 s: a burst of
        # 4, then 2 a second, is more than it ever needs.
        answers_per_second: float = 2.0,
        answer_burst: int = 4,
        # All answers together stay under half the server's default rate (50/s, burst 200,
        # signaling/limits.py), so our own offers always have the rest.
        total_answers_per_second: float = 20.0,
        total_answer_burst: int = 40,
    ) -> None:
        if not 1 <= max_pending_answers <= max_pending:
            raise ConfigError(
                f"max_pending_answers ({max_pending_answers}) must be 1 to max_pending "
                f"({max_pending})"
            )
        if min(answers_per_second, total_answers_per_second) <= 0:
            raise ConfigError("answer rates must be positive")
        if min(answer_burst, total_answer_burst) < 1:
            raise ConfigError("answer bursts must be at least 1")
        self.max_pending = max_pending
        self.max_pending_answers = max_pending_answers
        self.answers_per_second = answers_per_second
        self.answer_burst = answer_burst
        self.total_answers_per_second = total_answers_per_second
        self.total_answer_burst = total_answer_burst
        self._pending: dict[int, _Pending] = {}
        self._answering: dict[str, int] = {}  # remote -> ticket of its pending answer
        self._buckets: dict[str, TokenBucket] = {}
        self._total = TokenBucket(total_answers_per_second, total_answer_burst)
        self._tickets = itertools.count(1)
        self.refused = 0  # offers and dials turned down, for logs and tests
        self.peak_pending = 0  # most dials plus answers in flight at once

    @property
    def pending(self) -> int:
        """Dials and answers in flight."""
        return len(self._pending)

    @property
    def pending_answers(self) -> int:
        return len(self._answering)

    def offer_received(self, remote: str, now: float) -> Admitted | Refused:
        """An offer from ``remote`` at ``now`` (monotonic seconds): answer it or drop it.

        On ``Admitted`` with ``replaces``, give up that pending answer (already released).
        """
        bucket = self._buckets.get(remote)
        if bucket is not None and bucket.level(now) < 1.0:
            return self._refuse(f"over {self.answers_per_second:g} answers/s to {remote}")
        if self._total.level(now) < 1.0:
            return self._refuse(f"over {self.total_answers_per_second:g} answers/s in all")
        replaces = self._answering.get(remote)
        if replaces is None and (
            len(self._answering) >= self.max_pending_answers
            or len(self._pending) >= self.max_pending
        ):
            return self._refuse(
                f"{len(self._answering)} answers and {len(self._pending)} setups pending "
                f"(at most {self.max_pending_answers} and {self.max_pending})"
            )
        if bucket is None:
            self._prune(now)
            bucket = self._buckets[remote] = TokenBucket(
                self.answers_per_second, self.answer_burst, now
            )
        bucket.take(now)
        self._total.take(now)
        if replaces is not None:
            self.settled(replaces)
        ticket = self._add(_Pending(remote, answer=True))
        self._answering[remote] = ticket
        return Admitted(ticket, replaces)

    def dial_started(self, remote: str) -> Admitted | Refused:
        """We are about to dial ``remote``: a ticket, or a refusal when too much is pending."""
        if len(self._pending) >= self.max_pending:
            return self._refuse(f"{len(self._pending)} setups pending (at most {self.max_pending})")
        return Admitted(self._add(_Pending(remote, answer=False)))

    def settled(self, ticket: int) -> None:
        """The dial or answer of ``ticket`` opened, failed or was given up; idempotent."""
        pending = self._pending.pop(ticket, None)
        if pending is not None and pending.answer and self._answering.get(pending.remote) == ticket:
            del self._answering[pending.remote]

    # -- internals ------------------------------------------------------------------------------

    def _add(self, pending: _Pending) -> int:
        ticket = next(self._tickets)
        self._pending[ticket] = pending
        self.peak_pending = max(self.peak_pending, len(self._pending))
        return ticket

    def _refuse(self, reason: str) -> Refused:
        self.refused += 1
        return Refused(reason)

    def _prune(self, now: float) -> None:
        """Forget remotes whose bucket has refilled: they are as good as new. Buckets are only
        made on admission, so at most the total rate times the refill time stay."""
        if len(self._buckets) < 2 * self.max_pending:
            return
        for remote in [r for r, b in self._buckets.items() if b.level(now) >= b.burst]:
            del self._buckets[remote]


class ReplayGuard:
    """Refuses native offers that are stale or seen before (by offer id), sans I/O.

    An offer carries its sender's wall-clock time; ``now`` is ours. The window covers a link's
    setup (15 s, the connectors' ``connect_timeout``) plus 15 s of clock skew either way, as
    NTP-synced hosts are well within it. Ids are kept while they could still pass the age
    check. Only answered offers are recorded, and answers are rate-limited (``AnswerBudget``:
    at most 40 + 20/s, so ~1,240 ids in two windows); ``max_ids`` bounds it anyway.
    """

    def __init__(self, *, window: float = 30.0, max_ids: int = 4096) -> None:
        self.window = window
        self.max_ids = max_ids
        self._seen: OrderedDict[bytes, float] = OrderedDict()  # id -> when we saw it

    def check(self, offer_id: bytes, sent_at: float, now: float) -> str | None:
        """Why the offer must be refused, or None; ``seen`` records it once it is answered
        (an offer refused for another reason may come again, and is checked again)."""
        while self._seen and next(iter(self._seen.values())) < now - 2 * self.window:
            self._seen.popitem(last=False)  # sent at most `window` after we saw it: stale now
        if not now - self.window <= sent_at <= now + self.window:
            return f"offer {now - sent_at:+.1f} s old, outside the ±{self.window:g} s window"
        if offer_id in self._seen:
            return "offer id seen before (a replay)"
        return None

    def seen(self, offer_id: bytes, now: float) -> None:
        """``offer_id`` is being answered: refuse it from now on."""
        self._seen[offer_id] = now
        if len(self._seen) > self.max_ids:
            self._seen.popitem(last=False)


def cap_candidates(sdp: str, limit: int = DEFAULT_MAX_CANDIDATES) -> tuple[str, int, int]:
    """``sdp`` with at most ``limit`` ``a=candidate`` lines (the first ones), how many it
    kept and how many were dropped. Line endings stay as they came (RFC 8866 says CRLF)."""
    lines = sdp.splitlines(keepends=True)
    kept: list[str] = []
    seen = 0
    for line in lines:
        if line.startswith(_CANDIDATE_LINE):
            seen += 1
            if seen > limit:
                continue
        kept.append(line)
    dropped = max(0, seen - max(0, limit))
    return "".join(kept), seen - dropped, dropped
