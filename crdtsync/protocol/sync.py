"""The y-protocols sync state machine for one document on one link.

On start each side sends step 1 (its state vector); a step 1 is answered with step 2 (only
what the asker lacks); updates then stream both ways. The session is synced once step 2
arrived. A session not started yet still answers step 1 and takes updates: the mesh holds
back its own step 1 on links that open while another link's first sync is in flight (it
starts by itself once the remote's step 1 shows the remote has no content we lack). The
document sits behind :class:`DocumentAccess`, so this stays bytes in, bytes out; the link
core (``link.py``) frames what it produces.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from crdtsync.errors import LocalProtocolError, ProtocolError
from crdtsync.protocol.ymessages import (
    SyncType,
    check_update_header,
    parse_sync_message,
    read_state_vector,
    sync_step1,
    sync_step2,
    sync_update,
)
from crdtsync.protocol.yupdate import EMPTY_UPDATE

__all__ = ["DocumentAccess", "SyncInput", "SyncSession", "SyncState"]


class DocumentAccess(Protocol):
    """What a sync session needs of a document (implemented by ``crdtsync.Replica``)."""

    def state_vector(self) -> bytes:
        """The document's state vector, for step 1."""
        ...

    def missing_since(self, state_vector: bytes) -> bytes:
        """The update holding all the document has beyond ``state_vector`` (ValueError if bad)."""
        ...

    def apply_remote(self, update: bytes, origin: object) -> None:
        """Apply a remote update tagged with ``origin`` (ValueError if the update is rejected)."""
        ...


class SyncState(Enum):
    NEW = "new"
    AWAITING_STEP2 = "awaiting step 2"
    SYNCED = "synced"


class SyncInput(Enum):
    START = "start"
    STEP1 = "step 1"
    STEP2 = "step 2"
    UPDATE = "update"


_TRANSITIONS: dict[tuple[SyncState, SyncInput], SyncState] = {
    (SyncState.NEW, SyncInput.START): SyncState.AWAITING_STEP2,
    (SyncState.NEW, SyncInput.STEP1): SyncState.NEW,
    (SyncState.NEW, SyncInput.UPDATE): SyncState.NEW,
    (SyncState.AWAITING_STEP2, SyncInput.START): SyncState.AWAITING_STEP2,
    (SyncState.AWAITING_STEP2, SyncInput.STEP1): SyncState.AWAITING_STEP2,
    (SyncState.AWAITING_STEP2, SyncInput.STEP2): SyncState.SYNCED,
    (SyncState.AWAITING_STEP2, SyncInput.UPDATE): SyncState.AWAITING_STEP2,
    # A synced session may start again (resync after the mesh changed): step 1 goes out
    # again and the answering step 2 is applied like any update.
    (SyncState.SYNCED, SyncInput.START): SyncState.SYNCED,
    (SyncState.SYNCED, SyncInput.STEP1): SyncState.SYNCED,
    (SyncState.SYNCED, SyncInput.STEP2): SyncState.SYNCED,
    (SyncState.SYNCED, SyncInput.UPDATE): SyncState.SYNCED,
}

_INPUT_OF = {
    SyncType.STEP1: SyncInput.STEP1,
    SyncType.STEP2: SyncInput.STEP2,
    SyncType.UPDATE: SyncInput.UPDATE,
}


class SyncSession:
    """Sync of one document over one link; every method returns the messages to send."""

    def __init__(self, document: DocumentAccess, *, origin: object) -> None:
        self._document = document
        self._origin = origin
        self.state = SyncState.NEW

    def reset(self) -> None:
        """Start over: the remote dropped the document (ABSENT) and has now opened it again."""
        self.state = SyncState.NEW

    def _advance(self, event: SyncInput) -> bool:
        """Move to the next state; False (and no move) when the pair is illegal."""
        next_state = _TRANSITIONS.get((self.state, event))
        if next_state is None:
            return False
        self.state = next_state
        return True

    def start(self) -> list[bytes]:
        """Begin (or begin again) the exchange: returns step 1 to send."""
        if not self._advance(SyncInput.START):
            raise LocalProtocolError(f"sync session cannot start in state {self.state.value!r}")
        return [sync_step1(self._document.state_vector())]

    def _holds_all(self, clocks: dict[int, int]) -> bool:
        """Whether our document has every struct of a document at ``clocks``."""
        ours = read_state_vector(self._document.state_vector())
        return all(clock <= ours.get(client, 0) for client, clock in clocks.items())

    def send_update(self, update: bytes) -> list[bytes]:
        """Wrap a local (or relayed) update for the wire."""
        return [sync_update(update)]

    def receive_message(
        self, message: bytes, *, origin: object | None = None
    ) -> tuple[list[bytes], bool]:
        """Handle one y-protocols sync message from the remote; what it brings is applied
        with ``origin`` (default: the session's).

        Returns the messages to send back and whether this message completed the sync.
        Raises ProtocolError for malformed bytes, illegal order or an update the document rejects.
        """
        sync_type, payload = parse_sync_message(message)
        event = _INPUT_OF[sync_type]
        was_synced = self.state is SyncState.SYNCED
        if not self._advance(event):
            raise ProtocolError(f"sync: {event.value} is not allowed in state {self.state.value!r}")
        if event is SyncInput.STEP1:
            try:
                theirs = read_state_vector(payload)  # strict and bounded, unlike pycrdt's
                missing = self._document.missing_since(payload)
            except (ProtocolError, ValueError) as exc:
                raise ProtocolError(f"sync: step 1 holds a malformed state vector: {exc}") from exc
            replies = [sync_step2(missing)]
            if self.state is SyncState.NEW and not theirs:
                # The remote holds nothing (no structs, so no deletions either): we hold all
                # it has already. A newcomer's empty documents cost one message, not three.
                self.state = SyncState.SYNCED
                return replies, True
            if self.state is SyncState.NEW and self._holds_all(theirs):
                replies += self.start()  # the remote has no content we lack: no use waiting
            return replies, False
        if payload != EMPTY_UPDATE:
            try:
                check_update_header(payload)
            except ProtocolError as exc:
                raise ProtocolError(f"sync: malformed remote {event.value}: {exc}") from exc
            try:
                self._document.apply_remote(payload, self._origin if origin is None else origin)
            except ValueError as exc:
                raise ProtocolError(
                    f"sync: the document rejected a remote {event.value}: {exc}"
                ) from exc
        return [], event is SyncInput.STEP2 and not was_synced
