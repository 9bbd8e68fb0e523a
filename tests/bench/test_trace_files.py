"""Files cut from the bundled traces: what they read, how they were typed, and that one seed
always gives the same bytes."""

from __future__ import annotations

import random

import pycrdt
import pytest

from crdtsync.bench.trace_files import TRACES, build_files, cut, rhythm, type_in
from crdtsync.errors import ConfigError
from crdtsync.protocol.yupdate import read_delete_set
from crdtsync.testing.traces import TEXT_NAME, bundled_trace_path, load_trace

LINES = "".join(f"line {index}\n" for index in range(40))


def test_cut_splits_after_line_ends_into_non_empty_pieces() -> None:
    pieces = cut(LINES, 10, random.Random(3))
    assert len(pieces) == 10
    assert "".join(pieces) == LINES
    assert all(piece.endswith("\n") for piece in pieces)


def test_cut_falls_back_to_characters_when_lines_are_too_few() -> None:
    pieces = cut("one line, no end", 5, random.Random(3))
    assert len(pieces) == 5
    assert all(pieces)
    assert "".join(pieces) == "one line, no end"


def test_cut_is_fixed_by_its_seed() -> None:
    assert cut(LINES, 10, random.Random(3)) == cut(LINES, 10, random.Random(3))
    assert cut(LINES, 10, random.Random(3)) != cut(LINES, 10, random.Random(4))


def test_cut_refuses_more_pieces_than_characters() -> None:
    with pytest.raises(ConfigError, match="cannot cut 3 characters into 4 files"):
        cut("abc", 4, random.Random(0))


def test_rhythm_holds_the_trace_s_deletions_and_insertions() -> None:
    steps = rhythm()
    assert (0, 0) not in steps
    assert any(deleted for deleted, _ in steps)
    assert sum(inserted for _, inserted in steps) > sum(deleted for deleted, _ in steps)


def _text(doc: pycrdt.Doc[object]) -> str:
    return str(doc.get(TEXT_NAME, type=pycrdt.Text))


def test_type_in_reads_the_content_and_carries_its_deletions() -> None:
    doc = type_in(LINES, ((0, 3), (2, 0), (0, 1)), 0, client_id=7)
    assert _text(doc) == LINES
    deletions = read_delete_set(doc.get_update(doc.get_state()))
    assert deletions is not None
    assert deletions.get(7)  # the retyped characters are tombstones of client 7


def test_type_in_ends_even_when_the_rhythm_deletes_more_than_it_types() -> None:
    doc = type_in(LINES, ((5, 1),), 0, client_id=1)
    assert _text(doc) == LINES


def test_type_in_gives_the_same_bytes_for_the_same_start() -> None:
    steps = rhythm()
    first = type_in(LINES, steps, 100, client_id=1).get_update()
    assert first == type_in(LINES, steps, 100, client_id=1).get_update()
    assert first != type_in(LINES, steps, 101, client_id=1).get_update()


def test_build_files_cuts_every_trace_s_end_text_into_typed_files() -> None:
    files = build_files(300, seed=5)
    assert len(files) == 300
    assert len({file.path for file in files}) == 300
    ends = "".join(load_trace(bundled_trace_path(name)).end_content for name in TRACES)
    assert "".join(file.content for file in files) == ends
    for file in files:
        assert _text(file.doc) == file.content
        copy = file.copy()
        assert _text(copy) == file.content
        assert copy.get_state() == file.doc.get_state()
