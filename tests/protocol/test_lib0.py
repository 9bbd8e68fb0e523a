"""lib0 bytes: identical to what lib0's writeAny/readAny write and read, garbage refused."""

from __future__ import annotations

import contextlib
import copy
import math
import pickle
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtsync.errors import LocalProtocolError, ProtocolError
from crdtsync.protocol.lib0 import (
    DEFAULT_MAX_DEPTH,
    MAX_VAR_INT,
    UNDEFINED,
    Undefined,
    read_any,
    read_var_int,
    read_var_string,
    read_var_uint8_array,
    write_any,
    write_var_int,
    write_var_string,
    write_var_uint8_array,
)
from crdtsync.protocol.yupdate import write_var_uint

# Test vectors printed by lib0 0.2.120 (`encoding.writeAny`, `encoding.writeVarInt`) under
# Node 20, for the JS value that matches each Python one.

SIGNAL = {
    "type": "signal",
    "from": "6a4b1b3e-7c1c-4a2e-9d3f-0e1f2a3b4c5d",
    "to": "0f9e8d7c-6b5a-4f3e-8d2c-1b0a99887766",
    "token": 1764000000000.4567,  # Date.now() + Math.random(), fixed
    "signal": {
        "type": "offer",
        "sdp": "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    },
}
SIGNAL_HEX = (
    "7605047479706577067369676e616c0466726f6d772436613462316233652d376331632d346132652d"
    "396433662d30653166326133623463356402746f772430663965386437632d366235612d346633652d"
    "386432632d31623061393938383737363605746f6b656e7b4279ab697e80074f067369676e616c7602"
    "047479706577056f6666657203736470773d763d300d0a6f3d2d203436313137333134303034333030"
    "3531333336203220494e20495034203132372e302e302e310d0a733d2d0d0a743d3020300d0a"
)
ANNOUNCE = {"type": "announce", "from": "6a4b1b3e-7c1c-4a2e-9d3f-0e1f2a3b4c5d"}
ANNOUNCE_HEX = (
    "760204747970657708616e6e6f756e63650466726f6d772436613462316233652d376331632d346132"
    "652d396433662d306531663261336234633564"
)

# (Python value, lib0 bytes): write_any writes these bytes, read_any reads the value back.
BOTH_WAYS: list[tuple[Any, str]] = [
    (0, "7d00"),
    (1, "7d01"),
    (-1, "7d41"),
    (63, "7d3f"),
    (64, "7d8001"),
    (-63, "7d7f"),
    (-64, "7dc001"),
    (8191, "7dbf7f"),
    (8192, "7d808001"),
    (2**31 - 1, "7dbfffffff0f"),
    (-(2**31 - 1), "7dffffffff0f"),
    (2**31, "7c4f000000"),  # beyond varInt; exact in float32
    (-(2**31), "7ccf000000"),
    (2**32, "7c4f800000"),
    (2**53 - 1, "7b433fffffffffffff"),
    (-(2**53 - 1), "7bc33fffffffffffff"),
    (2**53, "7c5a000000"),
    (0.5, "7c3f000000"),
    (-1.5, "7cbfc00000"),
    (0.1, "7b3fb999999999999a"),
    (1e300, "7b7e37e43c8800759c"),
    (math.inf, "7c7f800000"),
    (-math.inf, "7cff800000"),
    (3.4028234663852886e38, "7c7f7fffff"),  # float32's largest
    (1.401298464324817e-45, "7c00000001"),  # float32's smallest subnormal
    (2**63 - 1, "7a7fffffffffffffff"),  # JS BigInt 2n ** 63n - 1n
    (-(2**63), "7a8000000000000000"),
    ("", "7700"),
    ("hello", "770568656c6c6f"),
    ("a\U0001f600é€\U0001d11e", "770e61f09f9880c3a9e282acf09d849e"),
    ("\ufeffx", "7704efbbbf78"),  # lib0 keeps a leading BOM
    (True, "78"),
    (False, "79"),
    (None, "7e"),
    (UNDEFINED, "7f"),
    (b"", "7400"),
    (b"\x00\x01\x02\xff", "7404000102ff"),
    ([1, "two", [3, [4]], None, True], "75057d01770374776f75027d0375017d047e78"),
    ([], "7500"),
    ({}, "7600"),
    (
        {"a": {"b": {"c": [1, {"d": "e"}]}}, "f": 0.25, "g": b"\x09"},
        "76030161760101627601016375027d017601016477016501667c3e8000000167740109",
    ),
    ({"b": 1, "10": 2, "a": 3, "2": 4}, "760401327d040231307d0201627d0101617d03"),
    (
        {"0": 1, "01": 2, "4294967294": 3, "4294967295": 4, "-1": 5, "1": 6},
        "760601307d0101317d060a343239343936373239347d030230317d020a343239343936373239357d04"
        "022d317d05",
    ),
    (SIGNAL, SIGNAL_HEX),
    (ANNOUNCE, ANNOUNCE_HEX),
]

# (Python value, lib0 bytes) that only go one way: what lib0 writes for the JS value, and what
# read_any returns for those bytes.
WRITE_ONLY: list[tuple[Any, str, Any]] = [
    (-0.0, "7d40", -0.0),
    (3.0, "7d03", 3),  # JS has one number type: an integral float is a varInt
    ("\ud800a\udc00", "7707efbfbd61efbfbd", "\ufffda\ufffd"),  # lone surrogates -> U+FFFD
    ("x\ud83d\ude00", "770578f09f9880", "x\U0001f600"),  # a surrogate pair is one code point
    ("\ud83d", "7703efbfbd", "\ufffd"),
    ((1, "two"), "75027d01770374776f", [1, "two"]),
    (bytearray(b"\x01"), "740101", b"\x01"),
]
READ_ONLY: list[tuple[str, Any]] = [
    ("7a0000000000000005", 5),  # JS BigInt 5n
    ("7b7ff8000000000000", math.nan),
]

VAR_INTS: list[tuple[int, str]] = [
    (0, "00"),
    (1, "01"),
    (63, "3f"),
    (64, "8001"),
    (8191, "bf7f"),
    (8192, "808001"),
    (2147483647, "bfffffff0f"),
    (-1, "41"),
    (-63, "7f"),
    (-64, "c001"),
    (-2147483647, "ffffffff0f"),
    (9007199254740991, "bfffffffffffff1f"),
    (-9007199254740991, "ffffffffffffff1f"),
]

ALL_HEX = [h for _, h in BOTH_WAYS] + [h for _, h, _ in WRITE_ONLY] + [h for h, _ in READ_ONLY]


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (dict keys in any order); NaN is NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b) and (
            a == b or (math.isnan(a) and math.isnan(b))
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# --- vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "hex_"), BOTH_WAYS)
def test_write_any_matches_lib0(value: Any, hex_: str) -> None:
    assert write_any(value).hex() == hex_


@pytest.mark.parametrize(("value", "hex_"), BOTH_WAYS)
def test_read_any_reads_lib0(value: Any, hex_: str) -> None:
    data = bytes.fromhex(hex_)
    decoded, end = read_any(data)
    assert end == len(data)
    assert same(value, decoded) or (type(value) is int and decoded == value)
    assert write_any(decoded) == data


@pytest.mark.parametrize(("value", "hex_", "back"), WRITE_ONLY)
def test_write_only_vectors(value: Any, hex_: str, back: Any) -> None:
    assert write_any(value).hex() == hex_
    decoded, _ = read_any(bytes.fromhex(hex_))
    assert same(back, decoded)


@pytest.mark.parametrize(("hex_", "value"), READ_ONLY)
def test_read_only_vectors(hex_: str, value: Any) -> None:
    decoded, end = read_any(bytes.fromhex(hex_))
    assert same(value, decoded)
    assert end == len(hex_) // 2


def test_nan_is_written_as_lib0_writes_it() -> None:
    assert write_any(math.nan).hex() == "7b7ff8000000000000"


def test_negative_zero_survives_a_round_trip() -> None:
    value, _ = read_any(write_any(-0.0))
    assert isinstance(value, float)
    assert math.copysign(1.0, value) == -1.0


def test_object_key_order_follows_js() -> None:
    decoded, _ = read_any(write_any({"b": 1, "10": 2, "a": 3, "2": 4}))
    assert isinstance(decoded, dict)
    assert list(decoded) == ["2", "10", "b", "a"]


def test_int_beyond_53_bits_is_a_bigint() -> None:
    assert write_any(2**53 + 1).hex() == "7a0020000000000001"
    assert read_any(write_any(2**53 + 1)) == (2**53 + 1, 9)


def test_read_at_an_offset() -> None:
    data = b"\xaa" + bytes.fromhex(ANNOUNCE_HEX) + b"\x7e"
    value, end = read_any(data, 1)
    assert value == ANNOUNCE
    assert read_any(data, end) == (None, len(data))


@pytest.mark.parametrize(("value", "hex_"), VAR_INTS)
def test_var_int_vectors(value: int, hex_: str) -> None:
    assert write_var_int(value).hex() == hex_
    assert read_var_int(bytes.fromhex(hex_), 0) == (value, len(hex_) // 2)


def test_var_string_and_uint8_array() -> None:
    assert write_var_string("AES-GCM").hex() == "074145532d47434d"
    assert read_var_string(bytes.fromhex("00074145532d47434d"), 1) == ("AES-GCM", 9)
    assert write_var_uint8_array(b"\x01\x02") == b"\x02\x01\x02"
    assert read_var_uint8_array(b"\x02\x01\x02\x03", 0) == (b"\x01\x02", 3)


def test_undefined_is_one_falsy_singleton() -> None:
    assert Undefined() is UNDEFINED
    assert copy.deepcopy(UNDEFINED) is UNDEFINED
    assert pickle.loads(pickle.dumps(UNDEFINED)) is UNDEFINED
    assert not UNDEFINED
    assert repr(UNDEFINED) == "UNDEFINED"
    assert UNDEFINED is not None


# --- round trips -----------------------------------------------------------------------

json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(max_size=32)
    | st.just(UNDEFINED),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_like)
def test_round_trip(value: Any) -> None:
    data = write_any(value)
    decoded, end = read_any(data)
    assert end == len(data)
    assert decoded == value
    assert write_any(decoded) == data  # what we read, we write back byte for byte


@given(st.integers(min_value=-MAX_VAR_INT, max_value=MAX_VAR_INT))
def test_var_int_round_trip(value: int) -> None:
    data = write_var_int(value)
    assert read_var_int(data + b"\x00", 0) == (value, len(data))


@given(st.text())
def test_var_string_round_trip(value: str) -> None:
    data = write_var_string(value)
    assert read_var_string(data, 0) == (value, len(data))


# --- caller misuse -----------------------------------------------------------------------


def nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, {1: "int key"}, [1, {"a": object()}], 2**63, -(2**63) - 1, 1j],
)
def test_write_any_refuses_what_lib0_cannot_hold(value: Any) -> None:
    with pytest.raises(LocalProtocolError):
        write_any(value)


def test_write_any_caps_depth_and_stops_cycles() -> None:
    assert read_any(write_any(nested_list(DEFAULT_MAX_DEPTH)))[0] == nested_list(DEFAULT_MAX_DEPTH)
    with pytest.raises(LocalProtocolError, match="deeper"):
        write_any(nested_list(DEFAULT_MAX_DEPTH + 1))
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(LocalProtocolError):
        write_any(cycle)


@pytest.mark.parametrize("value", [MAX_VAR_INT + 1, -MAX_VAR_INT - 1, True, 1.0])
def test_write_var_int_refuses(value: Any) -> None:
    with pytest.raises(LocalProtocolError):
        write_var_int(value)


def test_negative_offsets_are_caller_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        read_any(b"\x7e", -1)
    with pytest.raises(LocalProtocolError):
        read_var_int(b"\x00", -1)


# --- hostile input -------------------------------------------------------------------------


@pytest.mark.parametrize("hex_", ALL_HEX)
def test_every_truncation_is_a_protocol_error(hex_: str) -> None:
    data = bytes.fromhex(hex_)
    for cut in range(len(data)):
        with pytest.raises(ProtocolError):
            read_any(data[:cut])


@pytest.mark.parametrize("tag", [*range(116), *range(128, 256)])
def test_unknown_tags(tag: int) -> None:
    with pytest.raises(ProtocolError, match="unknown type tag"):
        read_any(bytes((tag, 0, 0, 0, 0, 0, 0, 0, 0)))


def test_deep_nesting_is_refused_quickly() -> None:
    ok = b"\x75\x01" * DEFAULT_MAX_DEPTH + b"\x7e"
    assert read_any(ok)[1] == len(ok)
    start = time.perf_counter()
    for opener in (b"\x75\x01", b"\x76\x01\x00"):
        with pytest.raises(ProtocolError, match="deeper"):
            read_any(opener * 200_000 + b"\x7e")
    with pytest.raises(ProtocolError):
        read_any(b"\x75\x01" * 10, max_depth=5)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "data",
    [
        b"\x77" + write_var_uint(2**53 - 1),  # a string of 2**53 - 1 bytes
        b"\x74" + write_var_uint(2**40) + b"\x00" * 100,
        b"\x75" + write_var_uint(2**40),  # an array of 2**40 items
        b"\x75\x65" + b"\x7e" * 100,  # 101 items in 100 bytes
        b"\x76\x33" + b"\x00\x7e" * 50,  # 51 entries in 100 bytes
        b"\x76" + write_var_uint(2**53 - 1),
        b"\x75" + b"\xff" * 9,  # a varuint longer than lib0 writes
    ],
)
def test_length_and_count_claims_beyond_the_data(data: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(ProtocolError):
        read_any(data)
    assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize(
    "hex_",
    [
        "7dffffffffffffff7f",  # varInt magnitude of 55 bits
        "7dffffffffffffffff01",  # varInt longer than 8 bytes
        "7d80",  # varInt truncated
        "7702c328",  # invalid UTF-8
        "7703eda080",  # an encoded surrogate: invalid UTF-8 for a fatal TextDecoder
        "7602" + "0161" + "7e" + "01ff7e",  # object key of invalid UTF-8
    ],
)
def test_malformed_scalars(hex_: str) -> None:
    with pytest.raises(ProtocolError):
        read_any(bytes.fromhex(hex_))


def test_a_large_valid_value_decodes_in_linear_time() -> None:
    data = b"\x75" + write_var_uint(200_000) + b"\x7e" * 200_000
    start = time.perf_counter()
    value, _ = read_any(data)
    assert value == [None] * 200_000
    assert time.perf_counter() - start < 2.0


@given(st.binary(max_size=200))
def test_garbage_raises_only_protocol_error(data: bytes) -> None:
    try:
        _, end = read_any(data)
    except ProtocolError:
        return
    assert 0 < end <= len(data)


@given(json_like, st.data())
def test_corrupted_values_raise_only_protocol_error(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(write_any(value))
    index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[index] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(ProtocolError):
        read_any(bytes(encoded))
