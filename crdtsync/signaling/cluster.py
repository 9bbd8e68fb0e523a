"""What a signaling core asks of the backplane, and what it knows of other servers, sans I/O.

With a backplane (``backplane.py``, Redis), several server processes share rooms. A core then
asks for a seat before a join completes (the per-room cap holds cluster-wide), releases it on
leave, and hands on what must reach a peer on another server. The backplane answers with the
members other servers hold (``RemoteMembers``): the core announces them to its own peers as it
does its own, and forgets them all when the backplane is lost, so a room is then local.
Members are native peer ids, or a y-webrtc connection's handle (its ids are not proven).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Claim", "ClusterCommand", "Fanout", "Forward", "Release", "RemoteMembers"]


@dataclass(frozen=True, slots=True)
class Claim:
    """Ask for a seat for ``member`` in ``room`` (at most ``limit`` across all servers); the
    answer is ``seat_granted`` or ``seat_refused`` with ``conn``."""

    room: str
    member: str
    conn: int
    limit: int


@dataclass(frozen=True, slots=True)
class Release:
    """``member`` left ``room``: free its seat, tell the other servers."""

    room: str
    member: str


@dataclass(frozen=True, slots=True)
class Forward:
    """A native signal for ``target``, a peer connected to ``server``."""

    server: str
    room: str
    sender: str
    target: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Fanout:
    """A y-webrtc publish to topic ``room``, for the subscribers other servers hold."""

    room: str
    frame: str


ClusterCommand = Claim | Release | Forward | Fanout


class RemoteMembers:
    """Each room's members on other servers (member -> server), as the backplane last said."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, str]] = {}

    def count(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    def members(self, room: str) -> frozenset[str]:
        return frozenset(self._rooms.get(room, ()))

    def server_of(self, room: str, member: str) -> str | None:
        return self._rooms.get(room, {}).get(member)

    def has_servers(self, room: str) -> bool:
        """Does any other server hold a member of ``room`` (is a fan-out worth sending)?"""
        return bool(self._rooms.get(room))

    def add(self, room: str, member: str, server: str) -> bool:
        """``member`` joined ``room`` at ``server``; True when that is news."""
        members = self._rooms.setdefault(room, {})
        known = member in members
        members[member] = server  # a peer that moved servers: its newest one
        return not known

    def remove(self, room: str, member: str, server: str) -> bool:
        """``member`` left ``room`` at ``server``; True when we had it there (a leave from a
        server it has since moved away from changes nothing)."""
        members = self._rooms.get(room, {})
        if members.get(member) != server:
            return False
        del members[member]
        if not members:
            del self._rooms[room]
        return True

    def replace(self, room: str, members: Mapping[str, str]) -> tuple[set[str], set[str]]:
        """The backplane's full list for ``room``: returns the members (added, removed)."""
        old = self._rooms.get(room, {})
        added, removed = members.keys() - old.keys(), old.keys() - members.keys()
        if members:
            self._rooms[room] = dict(members)
        else:
            self._rooms.pop(room, None)
        return set(added), set(removed)

    def forget(self, room: str) -> None:
        """Stop following ``room`` (none of ours is in it)."""
        self._rooms.pop(room, None)

    def clear(self) -> dict[str, set[str]]:
        """The backplane is lost: every room is local now; returns who was where."""
        rooms = {room: set(members) for room, members in self._rooms.items()}
        self._rooms.clear()
        return rooms
