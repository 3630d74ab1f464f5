"""Tests for freshlink.serializers: exact round trips, refusals, signing and the codec."""

from __future__ import annotations

import collections
import contextlib
import enum
import json
import math
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshlink.errors import (
    ConfigurationError,
    MissingDependencyError,
    SerializationError,
    TamperedPayloadError,
    ValueTooLargeError,
)
from freshlink.serializers import (
    Codec,
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Signer,
    make_codec,
)

SERIALIZERS = [JsonSerializer(), MsgpackSerializer()]
SERIALIZER_IDS = ["json", "msgpack"]
HYPOTHESIS = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------ helpers


def canon(value: Any) -> Any:
    """A comparable description of ``value`` that includes every type and exact detail.

    ``==`` is not enough: it calls 1 == 1.0 == True == Decimal(1), (1,) != [1] only by type,
    NaN != NaN, Decimal("1.10") == Decimal("1.1"), and aware datetimes equal by instant.
    """
    kind = type(value)
    if kind is float:
        return ("float", repr(value))  # keeps nan, inf, -0.0 and every digit
    if kind in (list, tuple):
        return (kind.__name__, [canon(item) for item in value])
    if kind is dict:
        return ("dict", [(canon(k), canon(v)) for k, v in value.items()])
    if kind in (set, frozenset):
        return (kind.__name__, sorted(repr(canon(item)) for item in value))
    if kind is Decimal:
        return ("Decimal", str(value))  # sign, digits and exponent
    if kind in (datetime, time):
        # isoformat has the wall time, the microseconds and the UTC offset if aware.
        return (kind.__name__, value.isoformat(), value.fold, value.utcoffset())
    if kind is date:
        return ("date", value.isoformat())
    if kind is timedelta:
        return ("timedelta", value.days, value.seconds, value.microseconds)
    assert kind in (type(None), bool, int, str, bytes, UUID), kind
    return (kind.__name__, value)


def roundtrip(serializer: Any, value: Any) -> Any:
    data = serializer.dumps(value)
    assert type(data) is bytes
    return serializer.loads(data)


# ------------------------------------------------------------------------------ strategies

# timezone() needs |offset| < 24h; sub-minute offsets exercise isoformat's "+HH:MM:SS.ffffff".
fixed_offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
special_decimals = st.sampled_from(
    [
        Decimal("NaN"),
        Decimal("-NaN"),
        Decimal("NaN123"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        Decimal("1.10"),
        Decimal("-0"),
        Decimal("0E-30"),
        Decimal("1E+3"),
    ]
)
decimals = st.decimals(allow_nan=False) | special_decimals
datetimes = (
    st.datetimes() | st.datetimes(timezones=st.timezones()) | st.datetimes(timezones=fixed_offsets)
)
times = st.times() | st.times(timezones=fixed_offsets)
common_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.dates()
    | st.timedeltas()
    | st.uuids()
)
leaves = common_leaves | decimals | datetimes | times
# Set members and dict keys must hash: no signalling NaN Decimal. Zone-aware datetimes are left
# out too: PEP 495 makes a folded zoneinfo time unequal to every other zone, so a set can hold
# two "equal instants" that legitimately merge once they come back with fixed offsets.
hashable_leaves = (
    common_leaves
    | st.decimals(allow_nan=False)
    | st.datetimes()
    | st.datetimes(timezones=fixed_offsets)
    | times
)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
TAGS = ["dict", "tuple", "set", "decimal", "datetime", "bytes", "uuid", "nope"]
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(
            st.text(max_size=4) | st.sampled_from(["$fl", "v", "fold", "tz"]), inner, max_size=4
        )
        | st.dictionaries(hashables, inner, max_size=4)
        # Look-alikes of the json serializer's own tags must stay plain dicts.
        | st.fixed_dictionaries({"$fl": st.sampled_from(TAGS), "v": inner})
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
    ),
    max_leaves=25,
)


# ------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=SERIALIZER_IDS)
@HYPOTHESIS
@given(value=values)
def test_roundtrip_preserves_types_and_values(serializer: Any, value: Any) -> None:
    assert canon(roundtrip(serializer, value)) == canon(value)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=SERIALIZER_IDS)
@settings(deadline=None)
@given(value=st.datetimes(timezones=st.timezones() | fixed_offsets))
def test_aware_datetime_keeps_wall_time_and_offset(serializer: Any, value: datetime) -> None:
    back = roundtrip(serializer, value)
    assert type(back) is datetime
    assert back.replace(tzinfo=None) == value.replace(tzinfo=None)  # incl. microseconds
    assert back.utcoffset() == value.utcoffset()
    assert back.tzinfo is not None


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=SERIALIZER_IDS)
@pytest.mark.parametrize(
    "digits",
    [
        "1.10",
        "1.100",
        "-0",
        "0.000",
        "1E+3",
        "-1.5E-10",
        "NaN",
        "-NaN",
        "NaN42",
        "sNaN",
        "Infinity",
        "-Infinity",
        "123456789012345678901234567890.123456789",
    ],
)
def test_decimal_keeps_exact_digits(serializer: Any, digits: str) -> None:
    back = roundtrip(serializer, Decimal(digits))
    assert type(back) is Decimal
    assert str(back) == digits
    assert back.as_tuple() == Decimal(digits).as_tuple()


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=SERIALIZER_IDS)
def test_containers_keep_their_types(serializer: Any) -> None:
    value = {
        "list": [1, [2]],
        "tuple": (1, (2,), [3, (4,)]),
        "empty": ((), [], set(), frozenset(), {}),
        "set": {1, (2, 3), frozenset({4})},
        1: "int key",
        (1, "a"): "tuple key",
        frozenset({1}): "frozenset key",
        None: "None key",
        2.5: "float key",
        b"raw": "bytes key",
        Decimal("1.10"): "decimal key",
    }
    back = roundtrip(serializer, value)
    assert back == value
    assert canon(back) == canon(value)
    assert type(back["tuple"]) is tuple
    assert type(back["tuple"][2]) is list
    assert type(back["list"][1]) is list
    assert [type(x) for x in back["empty"]] == [tuple, list, set, frozenset, dict]
    assert list(back) == list(value)  # key order survives too


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=SERIALIZER_IDS)
@pytest.mark.parametrize(
    "value",
    [
        {"$fl": "decimal", "v": "1.10"},
        {"$fl": "tuple", "v": [1, 2]},
        {"$fl": {"$fl": "bytes", "v": "AA=="}},
        {"$fl": "dict", "v": [["a", 1]], "other": 1},
        [{"$fl": 1}, ({"$fl": None},)],
    ],
)
def test_dicts_using_the_reserved_key_round_trip(serializer: Any, value: Any) -> None:
    assert canon(roundtrip(serializer, value)) == canon(value)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=SERIALIZER_IDS)
def test_special_floats_and_strings(serializer: Any) -> None:
    value = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 0.1, "\ud800", "é😀", "\x00"]
    back = roundtrip(serializer, value)
    assert math.isnan(back[0])
    assert back[1:3] == [math.inf, -math.inf]
    assert math.copysign(1.0, back[3]) == -1.0
    assert back[4:] == value[4:]


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=SERIALIZER_IDS)
def test_fold_naive_and_microseconds_survive(serializer: Any) -> None:
    value = [
        datetime(2021, 11, 7, 1, 30, 0, 1, fold=1),
        datetime(1, 1, 1),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-3))),
        time(1, 30, fold=1),
        time(23, 59, 59, 999999, tzinfo=UTC),
        date(1, 1, 1),
        timedelta(days=-999999999),
        timedelta.max,
    ]
    back = roundtrip(serializer, value)
    assert canon(back) == canon(value)
    assert back[0].fold == 1
    assert back[1].tzinfo is None
    assert back[2].utcoffset() == timedelta(hours=-3)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=SERIALIZER_IDS)
@pytest.mark.parametrize(
    "offset", [timedelta(microseconds=1), timedelta(microseconds=-500_000), timedelta(0)]
)
def test_sub_second_utc_offsets_survive(serializer: Any, offset: timedelta) -> None:
    # fromisoformat() in Python 3.11 reads "+00:00:00.000001" as UTC; the offset must not
    # depend on it.
    zone = timezone(offset)
    for value in (datetime(2020, 1, 1, tzinfo=zone), time(0, 0, tzinfo=zone)):
        back = roundtrip(serializer, value)
        assert back.utcoffset() == offset
        assert back.tzinfo is not None


def test_msgpack_handles_ints_beyond_64_bits() -> None:
    serializer = MsgpackSerializer()
    value = [2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**5000, -(10**5000), {2**100: (2**70,)}]
    assert canon(roundtrip(serializer, value)) == canon(value)


def test_json_output_is_compact_utf8_and_plain_for_plain_data() -> None:
    value = {"a": [1, 2.5, None, True, "é"], "b": {"c": "x"}}
    data = JsonSerializer().dumps(value)
    assert data == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert "é".encode() in data
    # Any JSON reader gets the same plain data back.
    assert json.loads(data) == value


def test_json_tags_what_json_lacks() -> None:
    data = JsonSerializer().dumps({"when": date(2024, 1, 2), 1: (Decimal("1.10"),)})
    assert json.loads(data) == {
        "$fl": "dict",
        "v": [
            ["when", {"$fl": "date", "v": "2024-01-02"}],
            [1, {"$fl": "tuple", "v": [{"$fl": "decimal", "v": "1.10"}]}],
        ],
    }


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=SERIALIZER_IDS)
def test_shared_subvalues_are_not_mistaken_for_cycles(serializer: Any) -> None:
    shared = [1, {"a": (2,)}]
    value = {"x": shared, "y": [shared, shared], "z": (shared,)}
    assert roundtrip(serializer, value) == value


# ------------------------------------------------------------------------------ refusals


class Foo:
    pass


class Color(enum.IntEnum):
    RED = 1


Point = collections.namedtuple("Point", "x y")


def _cyclic_list() -> Any:
    value: list[Any] = [1]
    value.append(value)
    return value


def _cyclic_dict() -> Any:
    value: dict[str, Any] = {}
    value["self"] = [value]
    return value


def _cycle_through_tuple() -> Any:
    value: list[Any] = []
    value.append((value,))
    return value


def _deep() -> Any:
    value: list[Any] = []
    for _ in range(100_000):
        value = [value]
    return value


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=SERIALIZER_IDS)
@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        (object, "object"),
        (Foo, "Foo"),
        (lambda: lambda: None, "function"),
        (lambda: [1, {"k": Foo()}], "Foo"),
        (lambda: {Foo(): 1}, "Foo"),
        (lambda: {1, Foo()}, "Foo"),
        (lambda: (1, object()), "object"),
        (lambda: Color.RED, "Color"),
        (lambda: Point(1, 2), "Point"),
        (lambda: collections.OrderedDict(a=1), "OrderedDict"),
        (_cyclic_list, "list"),
        (_cyclic_dict, "dict"),
        (_cycle_through_tuple, "list"),
        (_deep, "list"),
    ],
)
def test_unsupported_values_raise_serialization_error_naming_the_type(
    serializer: Any, make: Any, type_name: str
) -> None:
    with pytest.raises(SerializationError) as excinfo:
        serializer.dumps(make())
    message = str(excinfo.value)
    assert f"type {type_name!r}" in message
    assert f"with the {serializer.name} serializer" in message


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=SERIALIZER_IDS)
def test_subclasses_and_cycles_are_explained(serializer: Any) -> None:
    with pytest.raises(SerializationError, match="subclass of 'int'"):
        serializer.dumps(Color.RED)
    with pytest.raises(SerializationError, match="circular reference"):
        serializer.dumps(_cyclic_list())
    with pytest.raises(SerializationError, match="nested too deeply"):
        serializer.dumps(_deep())


def test_json_refuses_ints_it_cannot_print() -> None:
    with pytest.raises(SerializationError, match="'int'"):
        JsonSerializer().dumps([10**5000])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"\xff\xfe\x00",
        b"[1,2",
        b'{"$fl":"nope","v":1}',
        b'{"$fl":42,"v":1}',
        b'{"$fl":"decimal"}',
        b'{"$fl":"decimal","v":"abc"}',
        b'{"$fl":"bytes","v":"!!"}',
        b'{"$fl":"dict","v":[[[1],2]]}',
        b'{"$fl":"dict","v":[[1,2,3]]}',
        b'{"$fl":"tuple","v":"ab"}',
        b'{"$fl":"datetime","v":"yesterday"}',
        b'{"$fl":"uuid","v":"x"}',
        b'{"$fl":"timedelta","v":[1]}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_json_malformed_payloads_raise_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError, match="json serializer"):
        JsonSerializer().loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used
        b"\x92\x01",  # array of 2 with one item
        b"\x01\x02",  # trailing data
        b"\xc7\x00\x63",  # unknown ext type 99
        b"\xd4\x04\xff",  # decimal ext with invalid text
        b"\xc7\x03\x08\x00\x00\x00",  # timedelta ext too short
        b"\xd4\x09\x00",  # uuid ext with 1 byte
        b"\x81\x90\x01",  # map with an (unhashable) list key
        b"\x91" * 100_000,
    ],
)
def test_msgpack_malformed_payloads_raise_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError, match="msgpack serializer"):
        MsgpackSerializer().loads(data)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=SERIALIZER_IDS)
@settings(deadline=None)
@given(data=st.binary())
def test_random_bytes_never_escape_as_other_errors(serializer: Any, data: bytes) -> None:
    with contextlib.suppress(SerializationError):
        serializer.loads(data)


def test_missing_msgpack_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)  # makes `import msgpack` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'freshlink\[msgpack\]'"):
        MsgpackSerializer()
    with pytest.raises(ImportError):
        make_codec("msgpack")


# ------------------------------------------------------------------------------ pickle


@dataclass
class Custom:
    name: str
    items: list[int]

    def total(self) -> int:
        return sum(self.items)


_EXPLOITED: list[str] = []


class Exploit:
    def __reduce__(self) -> Any:
        return (_EXPLOITED.append, ("code ran",))


def test_pickle_serializer_round_trips_and_refuses_the_unpicklable() -> None:
    serializer = PickleSerializer()
    assert serializer.loads(serializer.dumps(Custom("a", [1, 2]))) == Custom("a", [1, 2])
    with pytest.raises(SerializationError, match="'function'"):
        serializer.dumps(lambda: None)
    with pytest.raises(SerializationError, match="pickle serializer"):
        serializer.loads(b"not a pickle")


# ------------------------------------------------------------------------------ signer

CTX = b"ns:key\x00tag\x001,2"


def test_signed_payload_layout() -> None:
    payload = Signer("s3cret").sign(CTX, b"body")
    assert payload.endswith(b"body")  # signing authenticates, it does not encrypt
    assert len(payload) == 3 + 32 + 4
    assert Signer("s3cret").verify(CTX, payload) == b"body"


@settings(deadline=None)
@given(
    context=st.binary(max_size=40),
    body=st.binary(max_size=64),
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_modified_byte_is_rejected(
    context: bytes, body: bytes, position: int, flip: int
) -> None:
    signer = Signer("s3cret")
    payload = bytearray(signer.sign(context, body))
    payload[position % len(payload)] ^= flip
    with pytest.raises(TamperedPayloadError):
        signer.verify(context, bytes(payload))


def test_every_single_bit_flip_and_truncation_is_rejected() -> None:
    signer = Signer("s3cret")
    payload = signer.sign(CTX, b'{"value":[1,2,3]}')
    for position in range(len(payload)):
        for bit in range(8):
            forged = bytearray(payload)
            forged[position] ^= 1 << bit
            with pytest.raises(TamperedPayloadError):
                signer.verify(CTX, bytes(forged))
    for size in range(len(payload)):
        with pytest.raises(TamperedPayloadError):
            signer.verify(CTX, payload[:size])
    with pytest.raises(TamperedPayloadError):
        signer.verify(CTX, payload + b"\x00")


def test_payload_is_bound_to_its_context() -> None:
    signer = Signer("s3cret")
    payload = signer.sign(b"key-a|gen=1", b"value")
    assert signer.verify(b"key-a|gen=1", payload) == b"value"
    for other in (b"key-b|gen=1", b"key-a|gen=2", b"", b"key-a|gen=1\x00"):
        with pytest.raises(TamperedPayloadError):
            signer.verify(other, payload)


def test_context_and_body_cannot_trade_bytes() -> None:
    signer = Signer("s3cret")
    payload = signer.sign(b"ab", b"c")
    shifted = payload[:-1] + b"bc"  # same MAC, claims context b"a" and body b"bc"
    with pytest.raises(TamperedPayloadError):
        signer.verify(b"a", shifted)


def test_other_secret_is_rejected_and_str_equals_utf8_bytes() -> None:
    payload = Signer("one").sign(CTX, b"x")
    with pytest.raises(TamperedPayloadError):
        Signer("two").verify(CTX, payload)
    assert Signer(b"one").verify(CTX, payload) == b"x"
    assert Signer("sécret").verify(CTX, Signer("sécret".encode()).sign(CTX, b"y")) == b"y"


def test_key_rotation() -> None:
    old, new = Signer("old-secret"), Signer("new-secret")
    rotated = Signer(["new-secret", "old-secret"])
    from_old = old.sign(CTX, b"v1")
    assert rotated.verify(CTX, from_old) == b"v1"  # still readable during the rotation
    from_rotated = rotated.sign(CTX, b"v2")
    assert new.verify(CTX, from_rotated) == b"v2"  # written with the newest secret
    with pytest.raises(TamperedPayloadError):
        old.verify(CTX, from_rotated)
    with pytest.raises(TamperedPayloadError):
        Signer(["new-secret"]).verify(CTX, from_old)  # the old one is retired


@pytest.mark.parametrize(
    "secrets", ["", "   ", b"", b" \t\n", [], ["ok", ""], ["ok", "  "], [b"ok", 42]]
)
def test_empty_or_invalid_secrets_are_configuration_errors(secrets: Any) -> None:
    with pytest.raises(ConfigurationError):
        Signer(secrets)


def test_signer_repr_hides_secrets() -> None:
    text = repr(Signer(["very-secret-1", "very-secret-2"]))
    assert "very-secret" not in text
    assert "2" in text


# ------------------------------------------------------------------------------ codec & make_codec


@pytest.mark.parametrize("name", ["json", "msgpack"])
@pytest.mark.parametrize("secret", [None, "s3cret"])
def test_codec_round_trip(name: str, secret: str | None) -> None:
    codec = make_codec(name, secret=secret)
    assert codec.serializer.name == name
    assert codec.signed is (secret is not None)
    value = {"a": (1, Decimal("2.50")), "b": {3, 4}, "c": datetime(2024, 5, 6, 7, 8, 9, 10)}
    payload = codec.encode(value, CTX)
    assert canon(codec.decode(payload, CTX)) == canon(value)


def test_make_codec_defaults() -> None:
    codec = make_codec()
    assert isinstance(codec.serializer, JsonSerializer)
    assert codec.signed is False
    assert codec.max_value_size == 1_048_576
    # Unsigned payloads are just the serialized body.
    assert codec.encode([1], CTX) == b"[1]"


def test_signed_codec_rejects_replays_and_unsigned_payloads() -> None:
    codec = make_codec(secret="s3cret")
    payload = codec.encode("value", b"key-a")
    with pytest.raises(TamperedPayloadError):
        codec.decode(payload, b"key-b")
    with pytest.raises(TamperedPayloadError):
        codec.decode(make_codec().encode("value", b"key-a"), b"key-a")


def test_value_too_large_names_size_and_limit_and_nothing_else_is_raised() -> None:
    codec = make_codec(max_value_size=100)
    fits = "x" * 98  # 100 bytes with its quotes
    assert codec.decode(codec.encode(fits, CTX), CTX) == fits
    with pytest.raises(ValueTooLargeError) as excinfo:
        codec.encode("x" * 99, CTX)
    assert type(excinfo.value) is ValueTooLargeError
    assert not isinstance(excinfo.value, SerializationError)
    assert "101 bytes" in str(excinfo.value)
    assert "max_value_size=100" in str(excinfo.value)


@pytest.mark.parametrize("name", ["json", "msgpack", "pickle"])
def test_size_limit_applies_to_the_body_before_signing(name: str) -> None:
    codec = make_codec(name, secret="s3cret", max_value_size=10_000)
    body_size = len(codec.serializer.dumps(b"x" * 5_000))
    assert body_size < 10_000
    assert len(codec.encode(b"x" * 5_000, CTX)) == body_size + 35
    with pytest.raises(ValueTooLargeError, match=r"10,000 bytes"):
        codec.encode(b"x" * 20_000, CTX)


def test_no_size_limit() -> None:
    codec = make_codec(max_value_size=None)
    value = "x" * 3_000_000
    assert codec.decode(codec.encode(value, CTX), CTX) == value


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "10"])
def test_invalid_max_value_size(limit: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_value_size"):
        make_codec(max_value_size=limit)


def test_unknown_serializer_lists_the_valid_names() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        make_codec("yaml")
    message = str(excinfo.value)
    assert "'yaml'" in message
    for name in ("'json'", "'msgpack'", "'pickle'"):
        assert name in message


@pytest.mark.parametrize("serializer", ["pickle", PickleSerializer()])
def test_pickle_requires_a_secret(serializer: Any) -> None:
    with pytest.raises(ConfigurationError, match="secret=") as excinfo:
        make_codec(serializer)
    assert "code" in str(excinfo.value)  # says why: unpickling runs code
    with pytest.raises(ConfigurationError, match="secret="):
        Codec(PickleSerializer())  # not by constructing the Codec directly either


def test_pickle_with_secret_round_trips_arbitrary_objects() -> None:
    codec = make_codec("pickle", secret="s3cret")
    assert codec.signed
    back = codec.decode(codec.encode(Custom("a", [1, 2, 3]), CTX), CTX)
    assert isinstance(back, Custom)
    assert back == Custom("a", [1, 2, 3])
    assert back.total() == 6


def test_forged_pickle_is_rejected_before_unpickling() -> None:
    victim = make_codec("pickle", secret="s3cret")
    attacker = make_codec("pickle", secret="guessed")
    forged = attacker.encode(Exploit(), CTX)
    with pytest.raises(TamperedPayloadError):
        victim.decode(forged, CTX)
    raw = PickleSerializer().dumps(Exploit())
    with pytest.raises(TamperedPayloadError):
        victim.decode(raw, CTX)
    assert _EXPLOITED == []


class Reversed:
    """A custom serializer: UTF-8 text, reversed."""

    name = "reversed"

    def dumps(self, value: object) -> bytes:
        if not isinstance(value, str):
            raise TypeError("only str")
        return value[::-1].encode()

    def loads(self, data: bytes) -> object:
        return data.decode()[::-1]


class ReturnsText:
    name = "text"

    def dumps(self, value: object) -> bytes:
        return str(value)  # type: ignore[return-value]

    def loads(self, data: bytes) -> object:
        return data


def test_custom_serializer_is_accepted_and_its_errors_are_wrapped() -> None:
    codec = make_codec(Reversed(), secret="s3cret")
    assert codec.serializer.name == "reversed"
    payload = codec.encode("hello", CTX)
    assert payload.endswith(b"olleh")
    assert codec.decode(payload, CTX) == "hello"
    with pytest.raises(SerializationError, match="only str"):
        codec.encode(1, CTX)
    with pytest.raises(SerializationError, match="reversed serializer"):
        make_codec(Reversed()).decode(b"\xff", CTX)
    with pytest.raises(SerializationError, match="not bytes"):
        make_codec(ReturnsText()).encode(1, CTX)


@pytest.mark.parametrize("bad", [JsonSerializer, object(), 42, None])
def test_objects_that_are_not_serializers_are_refused(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="serializer"):
        make_codec(bad)
