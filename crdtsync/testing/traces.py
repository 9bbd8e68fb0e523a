"""Real editing traces (josephg/editing-traces, CC BY 4.0) as text edits and Yjs updates.

Tests, benchmarks and the demo replay them: a sequential trace is a list of patches; a
concurrent trace is converted into one Yjs update per txn, made by its author's replica at
exactly the state the author saw, so peers can emit them while the engine carries them.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pycrdt

from crdtsync.errors import ConfigError

__all__ = [
    "TEXT_NAME",
    "AgentUpdate",
    "ConcurrentTrace",
    "ConcurrentTxn",
    "Patch",
    "SequentialTrace",
    "apply_patches",
    "bundled_trace_path",
    "client_id_for_agent",
    "concurrent_updates",
    "load_trace",
]

Patch = tuple[int, int, str]  # (position in characters, characters deleted, text inserted)
TEXT_NAME = "text"  # the root Text that replays write into
BUNDLED = ("clownschool", "friendsforever")


@dataclass(frozen=True, slots=True)
class SequentialTrace:
    start_content: str
    end_content: str
    txns: tuple[tuple[Patch, ...], ...]


@dataclass(frozen=True, slots=True)
class ConcurrentTxn:
    parents: tuple[int, ...]
    agent: int
    patches: tuple[Patch, ...]


@dataclass(frozen=True, slots=True)
class ConcurrentTrace:
    end_content: str
    num_agents: int
    txns: tuple[ConcurrentTxn, ...]


@dataclass(frozen=True, slots=True)
class AgentUpdate:
    """One txn of one author, as the Yjs update its replica produced."""

    agent: int
    update: bytes


def bundled_trace_path(name: str) -> Path:
    """The path of a trace shipped with crdtsync (see ``crdtsync/data/CREDITS.md``)."""
    if name not in BUNDLED:
        raise ConfigError(f"no bundled trace {name!r}; crdtsync ships {', '.join(BUNDLED)}")
    return Path(str(resources.files("crdtsync") / "data" / f"{name}.json.gz"))


def load_trace(path: str | os.PathLike[str]) -> SequentialTrace | ConcurrentTrace:
    """Read a trace file (gzipped or plain JSON); ConfigError naming the file if malformed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
        if data.get("kind") == "concurrent":
            return _concurrent(data)
        return SequentialTrace(
            start_content=_str(data["startContent"]),
            end_content=_str(data["endContent"]),
            txns=tuple(_patches(txn["patches"]) for txn in data["txns"]),
        )
    except ConfigError as exc:
        raise ConfigError(f"trace {path}: {exc}") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as exc:
        raise ConfigError(f"trace {path} is not a readable editing trace: {exc!r}") from exc


def _concurrent(data: dict[str, Any]) -> ConcurrentTrace:
    num_agents = int(data["numAgents"])
    txns = []
    for index, txn in enumerate(data["txns"]):
        parents = tuple(int(parent) for parent in txn["parents"])
        if any(not 0 <= parent < index for parent in parents):
            raise ConfigError(f"txn {index} names a parent that is not an earlier txn: {parents}")
        agent = int(txn["agent"])
        if not 0 <= agent < num_agents:
            raise ConfigError(f"txn {index} is by agent {agent}, but numAgents is {num_agents}")
        txns.append(ConcurrentTxn(parents, agent, _patches(txn["patches"])))
    return ConcurrentTrace(_str(data["endContent"]), num_agents, tuple(txns))


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {type(value).__name__}")
    return value


def _patches(raw: Iterable[Any]) -> tuple[Patch, ...]:
    patches = []
    for pos, deleted, inserted in raw:
        if not (isinstance(pos, int) and isinstance(deleted, int) and pos >= 0 and deleted >= 0):
            raise ConfigError(f"bad patch {[pos, deleted, inserted]!r}")
        patches.append((pos, deleted, _str(inserted)))
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
    """One author's replica, and which txns of each author it holds (a version vector)."""

    def __init__(self, agent: int, num_agents: int) -> None:
        self.agent = agent
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id_for_agent(agent))
        self.text = self.doc.get(TEXT_NAME, type=pycrdt.Text)
        self.version = [0] * num_agents
        self.made: list[bytes] = []
        self.doc.observe(lambda event: self.made.append(event.update))

    def catch_up(self, target: list[int], by_agent: list[list[bytes]]) -> None:
        """Apply the txns this replica lacks to reach ``target`` (its own too, after a restart)."""
        for other, (have, want) in enumerate(zip(self.version, target, strict=True)):
            for update in by_agent[other][have:want]:
                self.doc.apply_update(update)
            self.version[other] = max(have, want)

    def edit(self, patches: tuple[Patch, ...]) -> bytes:
        self.made.clear()
        with self.doc.transaction():
            apply_patches(self.text, patches)
        self.version[self.agent] += 1
        # A txn that changes nothing (no patches) still counts: an empty update stands in.
        return self.made[-1] if self.made else b"\x00\x00"


def concurrent_updates(trace: ConcurrentTrace) -> list[AgentUpdate]:
    """One Yjs update per txn, in txn order, each made at exactly its parents' state."""
    by_agent: list[list[bytes]] = [[] for _ in range(trace.num_agents)]
    versions: list[list[int]] = []
    authors = [_Author(agent, trace.num_agents) for agent in range(trace.num_agents)]
    result = []
    for txn in trace.txns:
        target = [0] * trace.num_agents
        for parent in txn.parents:
            target = [
                max(mine, theirs) for mine, theirs in zip(target, versions[parent], strict=True)
            ]
        author = authors[txn.agent]
        if any(have > want for have, want in zip(author.version, target, strict=True)):
            # The author knew more before than this txn's parents say: start its replica
            # again from exactly the parents' state (never seen in the bundled traces).
            author = authors[txn.agent] = _Author(txn.agent, trace.num_agents)
        if target[txn.agent] != len(by_agent[txn.agent]):
            raise ConfigError(f"txn by agent {txn.agent} does not follow that agent's own last txn")
        author.catch_up(target, by_agent)
        update = author.edit(txn.patches)
        by_agent[txn.agent].append(update)
        target[txn.agent] += 1
        versions.append(target)
        result.append(AgentUpdate(txn.agent, update))
    return result
