"""Real editing traces (josephg/editing-traces, CC BY 4.0) as text edits and Yjs updates.

Tests, benchmarks and the demo replay them: a sequential trace is a list of patches; a
concurrent trace is converted into one Yjs update per txn, made by its author's replica at
exactly the state the author saw, so peers can emit them while the engine carries them.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pycrdt

from crdtsync.errors import ConfigError
from crdtsync.protocol.yupdate import EMPTY_UPDATE
from crdtsync.replica import unintegrated

__all__ = [
    "TEXT_NAME",
    "AgentUpdate",
    "ConcurrentTrace",
    "ConcurrentTxn",
    "Patch",
    "SequentialTrace",
    "apply_patches",
    "apply_when_ready",
    "bundled_trace_path",
    "client_id_for_agent",
    "concurrent_updates",
    "load_trace",
]

Patch = tuple[int, int, str]  # (position in characters, characters deleted, text inserted)
TEXT_NAME = "text"  # the root Text that replays write into

_SUFFIX = ".json.gz"


@dataclass(frozen=True, slots=True)
class SequentialTrace:
    """One author's history: apply each txn's patches in order to ``start_content``."""

    start_content: str
    end_content: str
    txns: tuple[tuple[Patch, ...], ...]


@dataclass(frozen=True, slots=True)
class ConcurrentTxn:
    """Patches ``agent`` made on the document after ``parents`` (indices of earlier txns)."""

    parents: tuple[int, ...]
    agent: int
    patches: tuple[Patch, ...]


@dataclass(frozen=True, slots=True)
class ConcurrentTrace:
    """Several authors' interleaved txns; every correct replay ends at ``end_content``."""

    end_content: str
    num_agents: int
    txns: tuple[ConcurrentTxn, ...]


@dataclass(frozen=True, slots=True)
class AgentUpdate:
    """One txn of one author, as the Yjs update its replica produced."""

    agent: int
    update: bytes


def _bundled_names() -> list[str]:
    folder = resources.files("crdtsync") / "data"
    names = (entry.name for entry in folder.iterdir())
    return sorted(name.removesuffix(_SUFFIX) for name in names if name.endswith(_SUFFIX))


def bundled_trace_path(name: str) -> Path:
    """The path of a trace shipped with crdtsync (see ``crdtsync/data/CREDITS.md``)."""
    names = _bundled_names()
    if name not in names:
        raise ConfigError(f"no bundled trace {name!r}; crdtsync ships {', '.join(names)}")
    return Path(str(resources.files("crdtsync") / "data" / f"{name}{_SUFFIX}"))


def load_trace(path: str | os.PathLike[str]) -> SequentialTrace | ConcurrentTrace:
    """Read a trace file (gzipped or plain JSON); ConfigError naming the file if malformed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # the gzip magic number (RFC 1952)
            raw = gzip.decompress(raw)
        data = json.loads(raw)
        kind = data.get("kind")
        if kind == "concurrent":
            return _concurrent(data)
        if kind is not None:
            raise ConfigError(f"unknown kind {kind!r} (expected 'concurrent' or none)")
        return SequentialTrace(
            start_content=_str(data["startContent"]),
            end_content=_str(data["endContent"]),
            txns=tuple(_patches(txn["patches"]) for txn in data["txns"]),
        )
    except ConfigError as exc:
        raise ConfigError(f"trace {path}: {exc}") from exc
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"trace {path} is not a readable editing trace: {exc!r}") from exc


def _concurrent(data: dict[str, Any]) -> ConcurrentTrace:
    num_agents = _int(data["numAgents"])
    txns = []
    for index, raw in enumerate(data["txns"]):
        txn = ConcurrentTxn(
            tuple(_int(parent) for parent in raw["parents"]),
            _int(raw["agent"]),
            _patches(raw["patches"]),
        )
        _check_txn(index, txn, num_agents)
        txns.append(txn)
    return ConcurrentTrace(_str(data["endContent"]), num_agents, tuple(txns))


def _check_txn(index: int, txn: ConcurrentTxn, num_agents: int) -> None:
    """Parents must come first: a txn is converted from the states before it."""
    if any(not 0 <= parent < index for parent in txn.parents):
        raise ConfigError(f"txn {index} names a parent that is not an earlier txn: {txn.parents}")
    if not 0 <= txn.agent < num_agents:
        raise ConfigError(f"txn {index} is by agent {txn.agent}, but numAgents is {num_agents}")


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: object) -> int:
    # bool is an int to Python, never to a trace.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"expected an integer >= 0, got {value!r}")
    return value


def _patches(raw: Iterable[Any]) -> tuple[Patch, ...]:
    patches = []
    for patch in raw:
        if not (isinstance(patch, list | tuple) and len(patch) == 3):
            raise ConfigError(f"bad patch {patch!r}: expected [pos, del, ins]")
        pos, deleted, inserted = patch
        patches.append((_int(pos), _int(deleted), _str(inserted)))
    return tuple(patches)


def apply_patches(text: pycrdt.Text, patches: Iterable[Patch]) -> None:
    """Apply patches in order: each deletes, then inserts, at its position."""
    for pos, deleted, inserted in patches:
        if deleted:
            del text[pos : pos + deleted]
        if inserted:
            text.insert(pos, inserted)


def client_id_for_agent(agent: int) -> int:
    """The Yjs client id an author's edits carry (deterministic, never 0)."""
    return agent + 1


class _Author:
    """One author's replica, and how many txns of each author it holds (a version vector)."""

    def __init__(self, agent: int, num_agents: int) -> None:
        self.agent = agent
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id_for_agent(agent))
        self.text = self.doc.get(TEXT_NAME, type=pycrdt.Text)
        self.version = [0] * num_agents

    def catch_up(self, target: list[int], by_agent: list[list[bytes]]) -> None:
        """Apply the other authors' txns this replica lacks, in each author's order."""
        for other, (have, want) in enumerate(zip(self.version, target, strict=True)):
            for update in by_agent[other][have:want]:
                self.doc.apply_update(update)
            self.version[other] = want

    def edit(self, patches: tuple[Patch, ...]) -> bytes:
        """Make one txn and return exactly its diff (not the whole delete set, as a
        ``get_update(state)`` would)."""
        made: list[bytes] = []
        # Observed only here, so the remote updates applied in catch_up cost no encoding.
        subscription = self.doc.observe(lambda event: made.append(event.update))
        try:
            with self.doc.transaction():
                apply_patches(self.text, patches)
        finally:
            self.doc.unobserve(subscription)
        self.version[self.agent] += 1
        # pycrdt reports no event for a txn that changed nothing; it still counts as a txn.
        return made[-1] if made else EMPTY_UPDATE


def concurrent_updates(trace: ConcurrentTrace) -> list[AgentUpdate]:
    """One Yjs update per txn, in txn order, each made at exactly its parents' merged state.

    The ancestors of a txn are, per author, a prefix of that author's txns, so a version
    vector names them. Each author's replica only moves forward: its next txn descends from
    its previous one, so it holds everything the replica has seen (a trace where it does not
    raises ConfigError). Replicas never apply their own updates back, so every item a
    replica creates carries its author's client id.
    """
    num_agents = trace.num_agents
    by_agent: list[list[bytes]] = [[] for _ in range(num_agents)]
    versions: list[list[int]] = []  # per txn: the version vector after it
    authors = [_Author(agent, num_agents) for agent in range(num_agents)]
    result = []
    for index, txn in enumerate(trace.txns):
        _check_txn(index, txn, num_agents)
        target = [0] * num_agents
        for parent in txn.parents:
            target = list(map(max, target, versions[parent]))
        if target[txn.agent] != len(by_agent[txn.agent]):
            # Otherwise the ancestors of later txns would not be prefixes per author.
            raise ConfigError(
                f"txn {index} by agent {txn.agent} does not descend from that agent's "
                f"previous txn (it sees {target[txn.agent]} of its "
                f"{len(by_agent[txn.agent])} earlier txns)"
            )
        author = authors[txn.agent]
        author.catch_up(target, by_agent)
        update = author.edit(txn.patches)
        by_agent[txn.agent].append(update)
        target[txn.agent] += 1
        versions.append(target)
        result.append(AgentUpdate(txn.agent, update))
    return result


async def apply_when_ready(doc: pycrdt.Doc[Any], update: bytes, changed: asyncio.Event) -> None:
    """Apply an author's ``update`` to ``doc``, as far as it goes at once, then the rest as
    the edits it was made after arrive (``changed`` must be set on every change of ``doc``).

    An author made each edit after seeing its parents; typing it before they are here would
    hand pycrdt content it cannot place.
    """
    doc.apply_update(update)
    while (missing := unintegrated(doc, update)) is not None:
        changed.clear()
        await changed.wait()
        doc.apply_update(missing)
