"""A workspace of files cut from the bundled traces, each typed in as a trace's author types.

``bench workspace`` needs many documents of realistic content and history. The end texts of
the bundled traces, one after another, are cut at seeded line ends into files; each file is
typed into a ``Doc`` of its own in the rhythm of a real edit stream (sveltecomponent's txns:
how many characters each deleted and inserted, in order), so every document carries the
items, merges and tombstones of real typing, and its updates have realistic sizes.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

import pycrdt

from crdtsync.errors import ConfigError
from crdtsync.testing.traces import TEXT_NAME, SequentialTrace, bundled_trace_path, load_trace

__all__ = ["TRACES", "TraceFile", "build_files", "cut", "rhythm", "type_in"]

TRACES = ("automerge-paper", "sveltecomponent", "friendsforever", "clownschool")  # 165,813 chars
RHYTHM_TRACE = "sveltecomponent"  # one author, 18,335 txns, loads in ~50 ms
# A typist retypes what they deleted, so deletions make no progress: past this many steps
# per character, the rhythm's deletions are skipped and the file is typed to its end.
MAX_STEPS_PER_CHAR = 4

Rhythm = tuple[tuple[int, int], ...]  # per txn that changed something: (deleted, inserted)


@dataclass(frozen=True, slots=True)
class TraceFile:
    """One document of the workspace: its id, its typed ``Doc``, and what its text reads."""

    path: str
    doc: pycrdt.Doc[Any]
    content: str

    def copy(self) -> pycrdt.Doc[Any]:
        """Another holder's ``Doc``: the same history, as a peer that synced earlier has it."""
        copy: pycrdt.Doc[Any] = pycrdt.Doc()
        copy.apply_update(self.doc.get_update())
        return copy


def cut(text: str, count: int, rng: random.Random) -> list[str]:
    """``text`` cut into ``count`` non-empty pieces, each after a line end chosen by ``rng``
    (after any character where the text has too few lines)."""
    if not 1 <= count <= len(text):
        raise ConfigError(f"cannot cut {len(text)} characters into {count} files")
    line_ends = [index + 1 for index, char in enumerate(text[:-1]) if char == "\n"]
    candidates = line_ends if len(line_ends) >= count - 1 else range(1, len(text))
    bounds = [0, *sorted(rng.sample(candidates, count - 1)), len(text)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def rhythm() -> Rhythm:
    """The characters each txn of ``RHYTHM_TRACE`` deleted and inserted, in order."""
    trace = load_trace(bundled_trace_path(RHYTHM_TRACE))
    if not isinstance(trace, SequentialTrace):
        raise ConfigError(f"trace {RHYTHM_TRACE} is not a sequential trace")
    steps = (
        (sum(deleted for _, deleted, _ in txn), sum(len(inserted) for _, _, inserted in txn))
        for txn in trace.txns
    )
    return tuple(step for step in steps if step != (0, 0))


def type_in(content: str, steps: Rhythm, start: int, client_id: int) -> pycrdt.Doc[Any]:
    """A ``Doc`` whose text reads ``content``, typed at its end one transaction per step of
    ``steps`` from ``start`` on (wrapping): each deletes the characters before the cursor
    (they are typed again later) and inserts the next ones."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
    text = doc.get(TEXT_NAME, type=pycrdt.Text)
    typed = 0  # characters of content at the front of the text
    budget = MAX_STEPS_PER_CHAR * len(content)
    step = start
    while typed < len(content):
        deleted, inserted = steps[step % len(steps)]
        step += 1
        deleted = min(deleted, typed) if step - start <= budget else 0
        inserted = min(inserted, len(content) - typed + deleted)
        if not (deleted or inserted):
            continue
        with doc.transaction():
            if deleted:
                del text[typed - deleted : typed]
                typed -= deleted
            if inserted:
                text.insert(typed, content[typed : typed + inserted])
                typed += inserted
    return doc


def build_files(count: int, seed: int) -> list[TraceFile]:
    """``count`` files cut from the end texts of ``TRACES``, each typed in from a seeded
    point of the rhythm; the same ``count`` and ``seed`` give the same bytes."""
    rng = random.Random(seed)
    ends = [load_trace(bundled_trace_path(name)).end_content for name in TRACES]
    steps = rhythm()
    files = []
    for index, content in enumerate(cut("".join(ends), count, rng)):
        # Client ids fixed per file (never 0): every build gives the same updates.
        doc = type_in(content, steps, rng.randrange(len(steps)), client_id=index + 1)
        files.append(TraceFile(f"traces/{index:04d}.txt", doc, content))
    return files
