"""What a signaling core counts for operators: joins, relayed messages by kind, refusals.

Each core (``Router``, ``TopicRouter``) keeps one ``Tally`` of plain integers, bumped where its
rules decide; ``operations.py`` reads it only when ``/metrics`` is scraped, so the cores stay
free of any metrics library and a busy server pays an integer addition per event.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["Tally"]


@dataclass(slots=True)
class Tally:
    """Counts since the core was made; they only grow (Prometheus counters)."""

    joins: int = 0
    # Frames handed to another connection, by kind: "signal" for the native protocol (its
    # offers, answers and candidates are opaque to the server); for y-webrtc the payload's
    # "type" ("announce", "signal"), or "sealed" for a password room's encrypted payload.
    relayed: Counter[str] = field(default_factory=Counter)
    # Requests refused, by the code the client was sent ("room-full", "rate-limited", ...).
    refusals: Counter[str] = field(default_factory=Counter)
