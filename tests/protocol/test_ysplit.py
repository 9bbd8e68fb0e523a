"""split_update: every piece fits, the pieces in order rebuild the whole, garbage is refused.

pycrdt is the ground truth: docs are built with it, pieces are applied with it, and the
result is compared with what the whole update gives, by content and by state vector.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pycrdt
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from crdtsync.errors import LocalProtocolError, ProtocolError
from crdtsync.protocol.ymessages import read_state_vector
from crdtsync.protocol.ysplit import MIN_MAX_SIZE, split_update
from crdtsync.protocol.yupdate import read_delete_set, write_var_uint
from crdtsync.replica import unintegrated
from crdtsync.testing.traces import (
    TEXT_NAME,
    SequentialTrace,
    apply_patches,
    bundled_trace_path,
    load_trace,
)

EMPTY_UPDATE = b"\x00\x00"  # no structs, an empty delete set
WEBRTC_MAX_MESSAGE = 262_144  # libwebrtc's and aiortc's data-channel message cap

ROOTS: dict[str, type[Any]] = {
    "text": pycrdt.Text,
    "array": pycrdt.Array,
    "map": pycrdt.Map,
    "xml": pycrdt.XmlFragment,
}


def fresh_doc() -> pycrdt.Doc[Any]:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    for name, kind in ROOTS.items():
        doc.get(name, type=kind)
    return doc


def xml_tree(node: Any) -> Any:
    """An XML node as nested tuples, attributes sorted (``str()`` lists them in hash order)."""
    if isinstance(node, pycrdt.XmlText):
        return node.diff()
    children = [xml_tree(child) for child in node.children]
    if isinstance(node, pycrdt.XmlElement):
        attributes: Any = node.attributes  # pycrdt types its iterator as a plain Iterable
        return node.tag, sorted(attributes), children
    return children


def plain(value: Any) -> Any:
    """A Map's ``to_py()`` with subdocuments named by their guid, so that it compares."""
    if isinstance(value, pycrdt.Doc):
        return ("doc", value.guid)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def snapshot(doc: pycrdt.Doc[Any]) -> dict[str, Any]:
    """What a doc holds: every root's content, formatting included, its state vector and its
    delete set (as ``read_delete_set`` normalizes it)."""
    text = doc.get("text", type=pycrdt.Text)
    only_deletions = pycrdt.get_update(doc.get_update(), doc.get_state())
    return {
        "text": str(text),
        "diff": text.diff(),
        "array": doc.get("array", type=pycrdt.Array).to_py(),
        "map": plain(doc.get("map", type=pycrdt.Map).to_py()),
        "xml": xml_tree(doc.get("xml", type=pycrdt.XmlFragment)),
        "state": read_state_vector(doc.get_state()),
        "deleted": read_delete_set(only_deletions),
    }


def applied(pieces: list[bytes], doc: pycrdt.Doc[Any] | None = None) -> pycrdt.Doc[Any]:
    doc = fresh_doc() if doc is None else doc
    for piece in pieces:
        doc.apply_update(piece)
    return doc


def record(value: str) -> None:
    """A hypothesis event (shown by ``--hypothesis-show-statistics``), in a hypothesis test."""
    if currently_in_test_context():
        event(value)


def check_split(update: bytes, max_size: int, base: bytes = EMPTY_UPDATE) -> list[bytes]:
    """Split ``update``, check each piece's size and validity, and that the pieces applied in
    order, after ``base``, give what the whole gives.

    A doc may hold an item Yjs never cuts (a big embed, one big Any value) larger than
    ``max_size``: then the split is refused, and a larger size is tried, as a caller would.
    """
    while True:
        try:
            pieces = split_update(update, max_size)
            break
        except ProtocolError as exc:
            refused = str(exc)
        assert "cannot be split" in refused
        assert len(update) > max_size
        record("an item that cannot be cut is larger than max_size")
        max_size *= 2
    record(f"pieces: {'1' if len(pieces) == 1 else '2-9' if len(pieces) < 10 else '10+'}")
    if len(update) <= max_size:
        assert pieces == [update]
    assert all(len(piece) <= max_size for piece in pieces), [len(p) for p in pieces]
    for piece in pieces:
        assert split_update(piece, max(len(piece), MIN_MAX_SIZE)) == [
            piece
        ]  # each one is a valid update
    whole = applied([base, update])
    doc = applied([base])
    for piece in pieces:
        doc.apply_update(piece)
        # Dependencies come first: no piece waits in pycrdt's pending structs.
        assert unintegrated(doc, piece) is None
    assert snapshot(doc) == snapshot(whole)
    # Re-encoded, the rebuilt doc holds the same update content.
    rebuilt = applied([applied([base, *pieces]).get_update()])
    assert snapshot(rebuilt) == snapshot(whole)
    return pieces


# --- random documents ---------------------------------------------------------------------

# Astral characters (emoji, musical symbols) take two UTF-16 units: Yjs clocks count those.
characters = st.sampled_from(list("ab ,\n\u00e9\u4e2d\U0001f600\U0001d11e\U0001f469\u200d"))
strings = st.text(characters, min_size=1, max_size=12) | st.text(
    characters, min_size=40, max_size=600
)
attributes = st.dictionaries(
    st.sampled_from(["bold", "italic", "href"]),
    st.booleans() | st.text(characters, max_size=4),
    min_size=1,
    max_size=2,
)
scalars = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**63) + 1, 2**63 - 1)
    | st.text(characters, max_size=10)
    | st.binary(max_size=20)
)


def nested_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(characters, max_size=4), inner, max_size=4)
        ),
        max_leaves=12,
    )


values = nested_values(scalars)
# An embed is stored as JSON text, and pycrdt rewrites a float in it a digit off each time
# it re-encodes (6.405308279629004e-106 becomes ...003e-106): embeds hold no floats here.
embeds = nested_values(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=6)
)


def unit_offsets(text: Any) -> list[int]:
    """pycrdt's Text index at each character boundary: UTF-8 bytes, an embed counting one."""
    offsets = [0]
    for chunk, _ in text.diff():
        for size in [len(c.encode()) for c in chunk] if isinstance(chunk, str) else [1]:
            offsets.append(offsets[-1] + size)
    return offsets


def char_offset(text: Any, fraction: float) -> int:
    offsets = unit_offsets(text)
    return offsets[int(fraction * (len(offsets) - 1))]


def char_span(text: Any, start: float, size: int) -> tuple[int, int]:
    offsets = unit_offsets(text)
    first = int(start * (len(offsets) - 1))
    return offsets[first], offsets[min(first + size, len(offsets) - 1)]


def nested(kind: int, value: Any, text: str) -> Any:
    """A preliminary shared type to nest inside an array or a map."""
    if kind == 0:
        return pycrdt.Map({"k": value})
    if kind == 1:
        return pycrdt.Array([value, value])
    return pycrdt.Text(text)


def edit(doc: pycrdt.Doc[Any], op: tuple[Any, ...]) -> None:
    """One random edit of one of the roots."""
    name, *args = op
    text = doc.get("text", type=pycrdt.Text)
    array = doc.get("array", type=pycrdt.Array)
    map_ = doc.get("map", type=pycrdt.Map)
    xml = doc.get("xml", type=pycrdt.XmlFragment)
    if name == "insert":
        where, string, attrs = args
        text.insert(char_offset(text, where), string, attrs)
    elif name == "delete":
        where, size = args
        start, stop = char_span(text, where, size)
        if stop > start:
            del text[start:stop]
    elif name == "format":
        where, size, attrs = args
        start, stop = char_span(text, where, size)
        if stop > start:
            text.format(start, stop, attrs)
    elif name == "embed":
        where, value = args
        text.insert_embed(char_offset(text, where), {"embed": value})
    elif name == "push":
        where, items = args
        position = int(where * len(array))
        array[position:position] = items
    elif name == "nest":
        where, kind, value, string = args
        array.insert(int(where * len(array)), nested(kind, value, string))
    elif name == "pop":
        where, size = args
        start = int(where * len(array))
        stop = min(start + size, len(array))
        if stop > start:
            del array[start:stop]
    elif name == "set":
        key, kind, value, string = args
        map_[key] = value if kind > 2 else nested(kind, value, string)
    elif name == "unset":
        (key,) = args
        if key in map_:
            del map_[key]
    elif name == "element":
        tag, attrs, string = args
        xml.children.append(pycrdt.XmlElement(tag, attrs, [pycrdt.XmlText(string)]))
    elif name == "xml-text":
        where, string = args
        children = list(xml.children)
        if children and isinstance(children[-1], pycrdt.XmlElement):
            inner = list(children[-1].children)
            if inner and isinstance(inner[0], pycrdt.XmlText):
                inner[0].insert(char_offset(inner[0], where), string)
    elif name == "xml-delete" and len(xml.children):
        del xml.children[0]


fractions = st.floats(0, 1)
keys = st.sampled_from(["a", "b", "c\U0001f600"])
ops = st.one_of(
    st.tuples(st.just("insert"), fractions, strings, st.none() | attributes),
    st.tuples(st.just("delete"), fractions, st.integers(1, 40)),
    st.tuples(st.just("format"), fractions, st.integers(1, 20), attributes),
    st.tuples(st.just("embed"), fractions, embeds),
    st.tuples(st.just("push"), fractions, st.lists(values, min_size=1, max_size=30)),
    st.tuples(st.just("nest"), fractions, st.integers(0, 2), values, strings),
    st.tuples(st.just("pop"), fractions, st.integers(1, 5)),
    st.tuples(st.just("set"), keys, st.integers(0, 5), values, strings),
    st.tuples(st.just("unset"), keys),
    st.tuples(
        st.just("element"),
        st.sampled_from(["p", "h1"]),
        st.dictionaries(st.sampled_from(["id", "class"]), st.text(max_size=4), max_size=2),
        strings,
    ),
    st.tuples(st.just("xml-text"), fractions, strings),
    st.tuples(st.just("xml-delete")),
)


@dataclass(frozen=True)
class History:
    """A merged multi-client document, and the state an earlier replica had."""

    update: bytes  # everything, merged
    prefix: bytes  # what one replica held part way through


@st.composite
def histories(draw: st.DrawFn) -> History:
    """Up to three clients edit concurrently and sometimes exchange their states."""
    clients = draw(st.lists(st.integers(1, 2**32 - 1), min_size=1, max_size=3, unique=True))
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc(client_id=client) for client in clients]
    for doc in docs:
        for name, kind in ROOTS.items():
            doc.get(name, type=kind)
    steps = draw(st.lists(st.tuples(st.integers(0, len(docs) - 1), ops), min_size=6, max_size=40))
    prefix_at = draw(st.integers(0, len(steps)))
    prefix = EMPTY_UPDATE
    for index, (who, op) in enumerate(steps):
        if index == prefix_at:
            prefix = docs[who].get_update()
        if draw(st.integers(0, 4)) == 0:  # a sync from another replica
            docs[who].apply_update(docs[draw(st.integers(0, len(docs) - 1))].get_update())
        edit(docs[who], op)
    update = pycrdt.merge_updates(*(doc.get_update() for doc in docs))
    return History(update, prefix)


def size_for(update: bytes) -> st.SearchStrategy[int]:
    """A max_size from the minimum to a little above the update: most examples split."""
    most = max(MIN_MAX_SIZE, len(update) + 16)
    return st.integers(MIN_MAX_SIZE, min(most, MIN_MAX_SIZE + 100)) | st.integers(
        MIN_MAX_SIZE, most
    )


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histories(), st.data())
def test_pieces_fit_and_rebuild_the_whole_on_a_fresh_doc(
    history: History, data: st.DataObject
) -> None:
    check_split(history.update, data.draw(size_for(history.update), label="max_size"))


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histories(), st.data())
def test_pieces_of_a_diff_complete_a_doc_that_holds_a_prefix(
    history: History, data: st.DataObject
) -> None:
    base = applied([history.prefix])
    diff = applied([history.update]).get_update(base.get_state())
    check_split(diff, data.draw(size_for(diff), label="max_size"), base=history.prefix)


@settings(max_examples=30)
@given(st.randoms(use_true_random=False), st.integers(MIN_MAX_SIZE, 400))
def test_gaps_in_a_merged_update_survive_the_split(rng: random.Random, max_size: int) -> None:
    # Three updates of one client, merged without the middle one: the merge holds a Skip.
    doc = fresh_doc()
    text = doc.get("text", type=pycrdt.Text)
    updates = []
    for _ in range(3):
        state = doc.get_state()
        for _ in range(rng.randrange(1, 20)):
            string = "".join(rng.choices("xy\U0001f600", k=rng.randrange(1, 30)))
            text.insert(char_offset(text, rng.random()), string)
        updates.append(doc.get_update(state))
    gapped = pycrdt.merge_updates(updates[0], updates[2])
    # Applied where the gap is already filled: pycrdt mishandles a gap filled later (one
    # update held back, of the same client, even unsplit: 0, 2, 1 often diverges).
    check_split(gapped, max_size, base=pycrdt.merge_updates(updates[0], updates[1]))


# --- shapes that force each kind of cut ----------------------------------------------------


def test_an_update_that_fits_comes_back_unchanged() -> None:
    doc = fresh_doc()
    doc.get("text", type=pycrdt.Text).insert(0, "hello")
    update = doc.get_update()
    assert split_update(update, MIN_MAX_SIZE) == [update]
    assert split_update(b"\x00\x00", MIN_MAX_SIZE) == [b"\x00\x00"]


@pytest.mark.parametrize("character", ["x", "\u00e9", "\u4e2d", "\U0001d11e"])
def test_one_long_string_is_cut_between_characters(character: str) -> None:
    doc = fresh_doc()
    doc.get("text", type=pycrdt.Text).insert(0, character * 5000)
    pieces = check_split(doc.get_update(), 200)
    assert len(pieces) > 20
    assert "\ufffd" not in str(applied(pieces).get("text", type=pycrdt.Text))


def test_one_long_array_item_is_cut_by_element() -> None:
    doc = fresh_doc()
    doc.get("array", type=pycrdt.Array).extend([{"n": n, "s": "v" * (n % 7)} for n in range(3000)])
    assert len(check_split(doc.get_update(), 500)) > 10


def test_a_long_deleted_run_and_a_large_delete_set_spread_over_pieces() -> None:
    doc = fresh_doc()
    text = doc.get("text", type=pycrdt.Text)
    text.insert(0, "abcdefghij" * 1000)
    for start in range(9000, 0, -20):  # deletions that do not touch: one range each
        del text[start : start + 10]
    update = doc.get_update()
    pieces = check_split(update, 300)
    deletion_only = [piece for piece in pieces if piece[0] == 0]  # no struct group
    assert len(deletion_only) > 1


def test_an_item_that_cannot_be_cut_and_does_not_fit_is_refused_by_name() -> None:
    doc = fresh_doc()
    doc.get("array", type=pycrdt.Array).append(b"\x01" * 1000)
    update = doc.get_update()
    with pytest.raises(ProtocolError, match="Any") as info:
        split_update(update, 500)  # a single bytes value: one Any element, no cut
    assert not isinstance(info.value, LocalProtocolError)
    doc = fresh_doc()
    doc.get("text", type=pycrdt.Text).insert_embed(0, {"big": "x" * 1000})
    with pytest.raises(ProtocolError, match="Embed item"):
        split_update(doc.get_update(), 500)
    assert len(split_update(doc.get_update(), 2000)) == 1


def var_string(raw: bytes) -> bytes:
    return write_var_uint(len(raw)) + raw


def test_content_pycrdt_does_not_write_is_parsed_and_kept_whole() -> None:
    # Binary items (Yjs ``ContentBinary``) and an XmlHook, written the way Yjs writes them:
    # one group of client 9, from clock 0.
    structs = [
        b"\x03\x01" + var_string(b"array") + var_string(b"x" * 100),  # parent: root "array"
        b"\x83\x09\x00" + var_string(b"y" * 100),  # origin (9, 0)
        b"\x27\x01" + var_string(b"map") + var_string(b"hook") + b"\x05" + var_string(b"h"),
    ]
    update = b"\x01\x03\x09\x00" + b"".join(structs) + b"\x00"
    pieces = check_split(update, MIN_MAX_SIZE)
    assert len(pieces) == 2  # each Binary item alone nearly fills a piece
    assert applied(pieces).get("array", type=pycrdt.Array).to_py() == [b"x" * 100, b"y" * 100]
    assert list(applied(pieces).get("map", type=pycrdt.Map).keys()) == ["hook"]


def test_a_subdocument_is_kept_whole() -> None:
    doc = fresh_doc()
    sub: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.get("map", type=pycrdt.Map)["sub"] = sub
    doc.get("text", type=pycrdt.Text).insert(0, "\U0001f600" * 200)
    pieces = check_split(doc.get_update(), MIN_MAX_SIZE)
    assert len(pieces) > 1
    assert applied(pieces).get("map", type=pycrdt.Map)["sub"].guid == sub.guid


@pytest.mark.parametrize("max_size", [0, 1, MIN_MAX_SIZE - 1, 2.5e6, None, True])
def test_a_max_size_below_the_minimum_is_caller_misuse(max_size: Any) -> None:
    with pytest.raises(LocalProtocolError, match="max_size"):
        split_update(b"\x00\x00", max_size)


def test_a_two_megabyte_document_splits_into_webrtc_messages() -> None:
    rng = random.Random(2026)
    doc = fresh_doc()
    text = doc.get("text", type=pycrdt.Text)
    # Every word is 8 bytes of UTF-8, so every multiple of 8 is a character boundary.
    words = [
        "lorem  \n",
        "\U0001f600abcd",
        "\u4e2d\u6587ab",
        "caf\u00e9 ab",
        "\U0001d11e\U0001f469",
    ]
    assert {len(word.encode()) for word in words} == {8}
    text.insert(0, "".join(rng.choices(words, k=250_000)))  # one big paste
    for _ in range(15_000):  # many small inserts, each its own item
        text.insert(8 * rng.randrange(len(text) // 8 + 1), rng.choice(words))
    update = doc.get_update()
    assert len(update) > 2_000_000
    limit = WEBRTC_MAX_MESSAGE - 64
    pieces = check_split(update, limit)
    assert len(pieces) <= len(update) // limit + 2  # pieces are nearly full


def test_the_automerge_paper_trace_splits_at_16_kib() -> None:
    trace = load_trace(bundled_trace_path("automerge-paper"))
    assert isinstance(trace, SequentialTrace)
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=1)
    text = doc.get(TEXT_NAME, type=pycrdt.Text)
    text.insert(0, trace.start_content)
    for txn in trace.txns:
        with doc.transaction():
            apply_patches(text, txn)
    update = doc.get_update()
    pieces = split_update(update, 16 * 1024)
    assert all(len(piece) <= 16 * 1024 for piece in pieces)
    assert len(pieces) <= len(update) // (16 * 1024) + 2
    rebuilt: pycrdt.Doc[Any] = pycrdt.Doc()
    for piece in pieces:
        rebuilt.apply_update(piece)
    assert str(rebuilt.get(TEXT_NAME, type=pycrdt.Text)) == trace.end_content
    assert read_state_vector(rebuilt.get_state()) == read_state_vector(doc.get_state())
    deletions = pycrdt.get_update(rebuilt.get_update(), rebuilt.get_state())
    original = pycrdt.get_update(doc.get_update(), doc.get_state())
    assert read_delete_set(deletions) == read_delete_set(original)


# --- malformed input -----------------------------------------------------------------------


def raises_only_protocol_errors(data: bytes, max_size: int = MIN_MAX_SIZE) -> None:
    try:
        split_update(data, max_size)
    except LocalProtocolError:  # pragma: no cover - the test fails below
        raise AssertionError("malformed bytes reported as caller misuse") from None
    except ProtocolError:
        pass


@given(st.binary(max_size=400))
@example(b"\x01\x01\x05\x00\x04\x01\x01t\x00\x00")  # a String item of length 0
@example(b"\x01\x01\x05\x00\x08\x01\x01a\x01" + b"\x75\x01" * 5000 + b"\x7f\x00")  # deep Any
def test_garbage_raises_only_protocol_error(data: bytes) -> None:
    raises_only_protocol_errors(data)


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.randoms(use_true_random=False))
def test_truncated_or_corrupted_updates_raise_only_protocol_error(
    history: History, rng: random.Random
) -> None:
    update = history.update
    cuts = sorted(rng.sample(range(len(update)), min(len(update), 40)))
    for cut in cuts:
        with pytest.raises(ProtocolError):
            split_update(update[:cut], MIN_MAX_SIZE)
    with pytest.raises(ProtocolError, match="after the delete set"):
        split_update(update + b"\x00", MIN_MAX_SIZE)
    for _ in range(40):
        corrupted = bytearray(update)
        corrupted[rng.randrange(len(update))] = rng.randrange(256)
        raises_only_protocol_errors(bytes(corrupted))
