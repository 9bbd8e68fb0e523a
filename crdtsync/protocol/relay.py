"""Which links a document update goes to in a partial mesh, sans I/O.

The mesh (``mesh.py``) asks :func:`update_targets` for each update it sends or relays, from
the neighbour lists its links announced (LINKS), the update's sources (the peers whose edits
it holds, named by RELAY frames) and the link it came on. Presence keeps the simpler rule of
:func:`flood_targets`.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping

__all__ = ["NO_SOURCES", "Sources", "flood_targets", "merge_sources", "update_targets"]

Sources = frozenset[str] | None
"""The peers whose edits an update holds; None: not known (any peer may be one)."""

# One shared empty set: CPython allocates ~200 bytes for each ``frozenset()``.
NO_SOURCES: frozenset[str] = frozenset()

# The rule. Every source sends its edit to all its links, so a peer two hops from a source
# needs it from one relay only: of the source's neighbours linked with it, the one ranking
# first for (source, peer) sends it; each computes the same ranking from the lists it holds.
# Farther peers skip whom the source, the peer the update came from, or a neighbour of the
# source has a link with. In the rooms the mesh forms (every peer within two hops of the
# rest) an edit then costs about N - 1 messages.
#
# Why nothing is lost while the lists are right: a peer skips a link only when another is
# bound to deliver (the source, the first-ranked relay, or a peer that had the update
# earlier), and each deferral goes to a strictly better-ranked relay or back in time, so it
# ends. A relay acts on the first copy it gets, whichever path brought it (later copies are
# duplicates and die in the replica), so what a source's neighbour owes depends on the
# sources only, never on the path. An update of unknown sources (a step 2, content released
# from waiting, a peer that names none) is sent as if it came from any neighbour at once.
#
# Lists that lack a new link only make peers send more. A list that still names a lost link
# can make them send less than needed: the mesh then asks the links it kept updates from to
# pull again (RESYNC) once it hears of the loss.


def merge_sources(first: Sources, second: Sources) -> Sources:
    """The sources of two updates merged into one."""
    if first is None or second is None:
        return None
    return first | second


def flood_targets(lists: Mapping[str, Collection[str]], arrival: str | None) -> frozenset[str]:
    """Presence's rule: every link but the arrival one and its neighbours (it sends to them)."""
    if arrival is None:
        return frozenset(lists)
    told = lists.get(arrival, ())
    return frozenset(remote for remote in lists if remote != arrival and remote not in told)


def update_targets(
    local_id: str,
    lists: Mapping[str, Collection[str]],
    *,
    sources: Sources,
    arrival: str | None,
) -> frozenset[str]:
    """The links (remote ids, keys of ``lists``) a document update goes to.

    ``lists``: each open link's neighbour list, empty until announced. ``arrival``: the link
    the update came from, None for our own edits and for content whose link is unknown (both
    go to every link).
    """
    if arrival is None:
        return frozenset(lists)
    view = _View(local_id, lists)
    known = None if sources is None else sources - {local_id}  # our own edits went out already
    targets: set[str] = set()
    if not known:  # unknown (or only ours, which cannot be new here): any neighbour's edit
        targets |= view.beyond(arrival)
        for source in lists:
            targets |= view.designated(source, arrival, targets)
        return frozenset(targets)
    for source in known:
        if source in lists:
            targets |= view.designated(source, arrival)
        else:
            targets |= view.farther(source, arrival)
    return frozenset(targets)


class _View:
    """What one peer knows of the links around it: its own, and its neighbours' lists."""

    def __init__(self, local_id: str, lists: Mapping[str, Collection[str]]) -> None:
        self.local_id = local_id
        self.lists = lists

    def linked(self, first: str, second: str) -> bool:
        """Whether ``first`` and ``second`` have a link, as far as we know."""
        if first == self.local_id:
            return second in self.lists
        if second == self.local_id:
            return first in self.lists
        return second in self.lists.get(first, ()) or first in self.lists.get(second, ())

    def beyond(self, arrival: str) -> set[str]:
        """Links the arrival peer has no link of its own with (it reaches the others)."""
        return {
            remote
            for remote in self.lists
            if remote != arrival and not self.linked(arrival, remote)
        }

    def designated(self, source: str, arrival: str, known: Collection[str] = ()) -> set[str]:
        """Links we owe an edit of ``source``, our neighbour: those it has no link with, and
        for which we rank first among the neighbours of both (``known``: owed already)."""
        relays = self.lists.get(source, ())
        owed: set[str] = set()
        for remote in self.lists:
            if remote in (source, arrival) or remote in known or self.linked(source, remote):
                continue
            ours = _rank(source, remote, self.local_id)
            if not any(
                relay not in (source, self.local_id)
                and self.linked(relay, remote)
                and _rank(source, remote, relay) < ours
                for relay in relays
            ):
                owed.add(remote)
        return owed

    def farther(self, source: str, arrival: str) -> set[str]:
        """Links we owe an edit of ``source``, not our neighbour: all but those linked with
        the source (it sends to them), with the arrival peer, or with a neighbour of the
        source (one of that peer's neighbours does)."""
        near = [peer for peer in self.lists if self.linked(peer, source)]
        return {
            remote
            for remote in self.lists
            if remote != arrival
            and not self.linked(remote, source)
            and not self.linked(remote, arrival)
            and not any(self.linked(remote, peer) for peer in near)
        }


def _rank(source: str, remote: str, relay: str) -> tuple[int, str]:
    """Order of the relays that could take ``source``'s edit to ``remote``: the same on every
    peer (a stable hash, not Python's salted one), and different per pair, so relaying is
    spread over the source's neighbours."""
    key = f"{source}\0{remote}\0{relay}".encode()
    return zlib.crc32(key), relay
