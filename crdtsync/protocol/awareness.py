"""Presence (cursors, names) of one document, shared by all links of a peer.

Wraps pycrdt's ``Awareness`` (the y-protocols awareness state) but owns its timers, as every
core here does: the caller passes ``now``. Local changes are renewed before they go stale,
remote peers that stop renewing are dropped, and every change that is new to us is handed
to the caller to send on, tagged with the link it came from so it is never echoed back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Awareness

from crdtsync.errors import ProtocolError
from crdtsync.protocol.ymessages import read_var_uint

__all__ = ["OutgoingPresence", "Presence"]

logger = logging.getLogger(__name__)

_LOCAL = "local"  # the origin pycrdt's Awareness gives to our own changes


@dataclass(frozen=True, slots=True)
class OutgoingPresence:
    """An awareness update to send to every link but the one it came from (None: local)."""

    update: bytes
    origin: object | None


class Presence:
    """Presence of one document: apply remote updates, renew ours, expire the silent."""

    def __init__(
        self,
        awareness: Awareness,
        *,
        now: float,
        outdated_timeout: float = 30.0,
        on_outgoing: Callable[[], None] | None = None,
    ) -> None:
        # 30 s is y-protocols' own outdated timeout (awareness.js), so browser peers agree.
        self.awareness = awareness
        self.on_outgoing = on_outgoing
        self.outdated_timeout = outdated_timeout
        self._last_seen: dict[int, float] = {}
        self._heard_via: dict[int, object] = {}
        self._local_sent_at = now
        self._outgoing: list[OutgoingPresence] = []
        self._applying: object | None = None
        local = awareness.get_local_state()
        if local is not None and awareness.meta[awareness.client_id]["clock"] == 0:
            # Yjs ignores clock 0 from a client it does not know yet: start at 1.
            awareness.set_local_state(local)
        self._subscription = awareness.observe(self._on_update)

    def close(self) -> None:
        """Stop observing the awareness object."""
        self.awareness.unobserve(self._subscription)

    # -- inputs -------------------------------------------------------------------------------

    def receive_update(self, update: bytes, origin: object, now: float) -> None:
        """Apply a validated awareness update from link ``origin``.

        Then drain ``updates_to_send()``.
        """
        self._applying = origin
        try:
            self.awareness.apply_awareness_update(update, origin)
        except (ValueError, IndexError, RuntimeError, json.JSONDecodeError) as exc:
            raise ProtocolError(f"awareness: update rejected: {exc}") from exc
        finally:
            self._applying = None
        for client_id in _client_ids(update):
            if client_id != self.awareness.client_id:
                self._last_seen[client_id] = now
                self._heard_via[client_id] = origin

    def forget_origin(self, origin: object) -> None:
        """A link closed: drop the presence of peers last heard through it (they renew if alive)."""
        gone = [client for client, via in self._heard_via.items() if via is origin]
        for client in gone:
            del self._heard_via[client]
            self._last_seen.pop(client, None)
        if gone:
            self.awareness.remove_awareness_states(gone, origin)

    def handle_timer(self, now: float) -> None:
        """Renew our state and expire silent peers; then drain ``updates_to_send()``."""
        if now >= self._local_sent_at + self.outdated_timeout / 2:
            local = self.awareness.get_local_state()
            if local is not None:
                self.awareness.set_local_state(local)  # bumps the clock: a renewal
            self._local_sent_at = now
        expired = [
            client
            for client, seen in self._last_seen.items()
            if now >= seen + self.outdated_timeout
        ]
        for client in expired:
            del self._last_seen[client]
            self._heard_via.pop(client, None)
        if expired:
            logger.debug("= presence of clients %s expired", expired)
            self.awareness.remove_awareness_states(expired, "timeout")

    def get_timer(self) -> float:
        """The next time ``handle_timer()`` must run."""
        deadline = self._local_sent_at + self.outdated_timeout / 2
        if self._last_seen:
            deadline = min(deadline, min(self._last_seen.values()) + self.outdated_timeout)
        return deadline

    # -- outputs ------------------------------------------------------------------------------

    def full_state(self) -> bytes:
        """Every known client's state, for a link that just opened."""
        return self.awareness.encode_awareness_update(list(self.awareness.meta))

    def updates_to_send(self, now: float) -> list[OutgoingPresence]:
        """Updates to send on since the last call (local ones renew our timer)."""
        outgoing, self._outgoing = self._outgoing, []
        if any(item.origin is None for item in outgoing):
            self._local_sent_at = now
        return outgoing

    # -- internals ----------------------------------------------------------------------------

    def _on_update(self, topic: str, change: tuple[dict[str, Any], Any]) -> None:
        if topic != "update":
            return
        diff, origin = change
        clients = [*diff["added"], *diff["updated"], *diff["removed"]]
        if not clients:
            return
        if origin == _LOCAL:
            source: object | None = None
        elif self._applying is not None and origin is self._applying:
            source = origin
        else:
            # Expiry and forgotten links are local judgements: others may still hear that
            # client, so its removal is not broadcast.
            return
        self._outgoing.append(
            OutgoingPresence(self.awareness.encode_awareness_update(clients), source)
        )
        if self.on_outgoing is not None:
            self.on_outgoing()


def _client_ids(update: bytes) -> list[int]:
    """The client ids an awareness update speaks of (the update is already validated)."""
    ids: list[int] = []
    count, offset = read_var_uint(update, 0)
    for _ in range(count):
        client_id, offset = read_var_uint(update, offset)
        _clock, offset = read_var_uint(update, offset)
        length, offset = read_var_uint(update, offset)
        offset += length
        ids.append(client_id)
    return ids
