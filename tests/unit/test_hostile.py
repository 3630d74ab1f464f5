"""Hostile keys and values: every call works with a correct, stable key, or raises a clear
freshlink error; nothing bad is ever stored, and garbage read back is a miss.

Arguments: newlines, spaces, braces, glob characters, very long strings, non-UTF-8 bytes, lone
surrogates, objects whose ``__str__``/``__repr__``/``__format__`` vary or raise, with and
without key templates. Values: too large, cyclic, not serialisable. Fuzzing: key building
(``encode_arg``, ``KeySpec.key_for``), payload decoding (``JsonSerializer.loads``,
``Codec.decode`` with and without a signer) and the Redis backend's parsing of entries and
generations written raw into Redis.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshlink import Cache, Local
from freshlink.backends.base import Entry
from freshlink.backends.redis import server_identity
from freshlink.errors import (
    ConfigurationError,
    FreshlinkError,
    InvalidTagError,
    KeyEncodingError,
    SerializationError,
    TamperedPayloadError,
    ValueTooLargeError,
)
from freshlink.keys import MAX_KEY_LENGTH, KeySpec, encode_arg, safe_key
from freshlink.serializers import Codec, JsonSerializer, Signer, make_codec

FUZZ = settings(
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

HOSTILE_STRINGS = [
    "plain",
    "a\nb",
    "a\r\nb",
    "a b",
    " ",
    "\t",
    "",
    "{}",
    "{x}",
    "{0}",
    "}{",
    "{{",
    "*",
    "?",
    "[a-z]",
    "user:*",
    "**/*",
    "\\*",
    "%",
    "%2A",
    "a:b",
    "#",
    "#" + "0" * 32,
    "'",
    '"',
    "\x00",
    "\x1b[2J",
    "\u2028",
    "\ufeff",
    "é",
    "日本語",
    "\U0001f600",
    "\ud800",
    "a\udfffb",
    "x" * 100_000,
    "y" * (MAX_KEY_LENGTH + 1),
]
HOSTILE_ARGS: list[Any] = [
    *HOSTILE_STRINGS,
    b"\xff\xfe",
    b"",
    b"\x00\n*",
    ("a\n", "*"),
    ["{}", "\x00"],
    {"k\n": "*"},
    frozenset({"[", "]"}),
    0,
    2**200,
    1.5,
    math.inf,
    Decimal("1.10"),
]
SURROGATES = {"\ud800", "a\udfffb"}


def printable_key(key: str) -> bool:
    return bool(key) and all(c.isprintable() and not c.isspace() for c in key)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_cache(
    request: pytest.FixtureRequest, caches: list[Cache]
) -> Iterator[Callable[..., Cache]]:
    """Caches on the memory backend, or on the shared redis-server (strict, no L1)."""
    if request.param == "memory":

        def make(**kw: Any) -> Cache:
            c = Cache(**kw)
            caches.append(c)
            return c

        yield make
    else:
        yield request.getfixturevalue("make_redis_cache")


# ---------------------------------------------------------------------------- arguments


def test_hostile_arguments_get_stable_distinct_keys_and_no_cross_talk(
    make_cache: Callable[..., Cache],
) -> None:
    cache = make_cache()
    loads: list[Any] = []

    @cache.cached(ttl=60)
    def describe(x: Any) -> str:
        loads.append(x)
        return repr(x)

    keys: dict[str, Any] = {}
    for x in HOSTILE_ARGS:
        assert describe(x) == repr(x)
        k = describe.key(x)
        assert k == describe.key(copy.deepcopy(x)), f"unstable key for {x!r:.40}"
        assert printable_key(k), k
        assert len(k) < 300, k
        assert k not in keys, f"{x!r:.40} and {keys.get(k)!r:.40} share a key"
        keys[k] = x
    n = len(loads)
    for x in HOSTILE_ARGS:
        assert describe(copy.deepcopy(x)) == repr(x)  # no cross-talk between entries
    assert len(loads) == n  # every one of them was cached under its own key


def test_hostile_strings_in_key_templates(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache()
    loads: list[str] = []

    @cache.cached(ttl=60, key="h:{x}", tags=["h:{x}"])
    def describe(x: str) -> str:
        loads.append(x)
        return repr(x)

    keys: dict[str, str] = {}
    refused: dict[str, str] = {}
    for x in HOSTILE_STRINGS:
        try:
            assert describe(x) == repr(x)
        except KeyEncodingError as exc:
            refused[x] = str(exc)
            continue
        k = describe.key(x)
        assert k == describe.key(x)
        assert safe_key(k) == k  # short, printable, no whitespace or glob characters
        assert k not in keys
        keys[k] = x
    # Only lone surrogates may be refused (they have no UTF-8 encoding); the rest work.
    assert set(refused) <= SURROGATES
    assert all("h:{x}" in message for message in refused.values())  # names the template
    n = len(loads)
    for x in HOSTILE_STRINGS:
        if x not in refused:
            assert describe(x) == repr(x)
    assert len(loads) == n


def test_hostile_tag_values_invalidate_exactly_their_own_entries(
    make_cache: Callable[..., Cache],
) -> None:
    cache = make_cache()
    loads: list[str] = []
    args = [x for x in HOSTILE_STRINGS if x not in SURROGATES]

    @cache.cached(ttl=60, tags=["t:{x}"])
    def read(x: str) -> str:
        loads.append(x)
        return repr(x)

    @cache.invalidates("t:{x}")
    def write(x: str) -> None:
        pass

    for x in args:
        read(x)
    for x in args:
        write(x)
        loads.clear()
        for y in args:
            assert read(y) == repr(y)
        assert loads == [x], f"invalidating {x!r:.30} reloaded {[y[:30] for y in loads]}"


def test_glob_characters_in_tags_are_literal(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache()
    loads: list[int] = []

    @cache.cached(ttl=60, tags=["user:{user_id}"])
    def profile(user_id: int) -> int:
        loads.append(user_id)
        return user_id

    for uid in (1, 2, 12):
        profile(uid)
    for pattern in ("user:*", "*", "user:?", "user:[12]", "user:1*", "user:%", "user:.*"):
        cache.invalidate(pattern)
    for uid in (1, 2, 12):
        assert profile(uid) == uid
    assert loads == [1, 2, 12]  # no pattern matched anything
    cache.invalidate("user:1")
    profile(1)
    profile(12)
    assert loads == [1, 2, 12, 1]


def test_hostile_low_level_keys_and_tags(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache()
    for i, key in enumerate(HOSTILE_STRINGS):
        if key:
            cache.set(key, i)
    for i, key in enumerate(HOSTILE_STRINGS):
        if key:
            assert cache.get(key) == i, repr(key)[:40]
    assert cache.get("x" * 99_999) is None
    for bad in ("", None, 7, b"key"):
        with pytest.raises(ConfigurationError):
            cache.get(bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError):
            cache.set(bad, 1)  # type: ignore[arg-type]
    for bad_tag in ("a b", "a\nb", "\x00", "", 7):
        with pytest.raises(InvalidTagError):
            cache.set("k", 1, tags=[bad_tag])  # type: ignore[list-item]
        with pytest.raises(InvalidTagError):
            cache.invalidate(bad_tag)  # type: ignore[arg-type]
    cache.delete("a\nb")
    assert cache.get("a\nb") is None
    assert cache.get("a b") == HOSTILE_STRINGS.index("a b")


def test_a_crafted_key_cannot_read_a_hashed_key(make_cache: Callable[..., Cache]) -> None:
    # Keys that are not short and printable are hashed to "#" + digest; a caller who controls
    # a whole key must not be able to name that digest and read (or overwrite) the entry.
    cache = make_cache()
    cache.set("a b", "victim's value")
    crafted = safe_key("a b")
    assert crafted != "a b"
    assert cache.get(crafted) is None
    cache.set(crafted, "attacker's value")
    assert cache.get("a b") == "victim's value"


class VaryingText:
    """An object whose text changes on every call (a counter, a timestamp, a random id)."""

    counter = itertools.count()

    def __str__(self) -> str:
        return f"v{next(self.counter)}"

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return str(self)


class RaisingText:
    def __str__(self) -> str:
        raise RuntimeError("str boom")

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        raise RuntimeError("format boom")


class Plain:
    """No __str__, no __freshlink_key__: its default text holds its memory address."""

    def __init__(self, n: int) -> None:
        self.n = n


class RaisingProxy:
    """A lazy proxy whose attribute access raises (an unloaded ORM object, a closed session)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"proxy is detached (asked for {name})")


class VaryingStr(str):
    def __str__(self) -> str:
        return f"v{next(VaryingText.counter)}"


class RaisingStr(str):
    def __str__(self) -> str:
        raise RuntimeError("str subclass boom")


class WithHook:
    def __init__(self, pk: Any) -> None:
        self.pk = pk

    def __freshlink_key__(self) -> Any:
        return self.pk


def stable_or_refused(fn: Any, make_arg: Callable[[], Any]) -> None:
    """Calling ``fn`` works with a stable key, or raises a clear KeyEncodingError."""
    try:
        k1 = fn.key(make_arg())
    except KeyEncodingError as exc:
        message = str(exc)
    else:
        arg = make_arg()
        assert fn.key(arg) == k1 == fn.key(arg), "the same argument gave different keys"
        assert fn(arg) == 1
        return
    assert type(make_arg()).__name__ in message or "template" in message
    with pytest.raises(KeyEncodingError):
        fn(make_arg())


@pytest.mark.parametrize(
    "make_arg",
    [VaryingText, RaisingText, RaisingProxy, lambda: VaryingStr("a"), lambda: RaisingStr("a")],
    ids=[
        "varying-str",
        "raising-str",
        "raising-getattr",
        "str-subclass-varying",
        "str-sub-raising",
    ],
)
def test_odd_objects_with_the_default_key(make_arg: Callable[[], Any]) -> None:
    cache = Cache()

    @cache.cached(ttl=60)
    def f(x: Any) -> int:
        return 1

    stable_or_refused(f, make_arg)


@pytest.mark.parametrize(
    "make_arg",
    [VaryingText, RaisingText, lambda: VaryingStr("a"), lambda: RaisingStr("a")],
    ids=["varying-str", "raising-str", "str-subclass-varying", "str-sub-raising"],
)
def test_odd_objects_in_key_templates(make_arg: Callable[[], Any]) -> None:
    cache = Cache()

    @cache.cached(ttl=60, key="o:{x}")
    def f(x: Any) -> int:
        return 1

    stable_or_refused(f, make_arg)


def test_mock_objects_are_refused() -> None:
    cache = Cache()

    @cache.cached(ttl=60)
    def f(x: Any) -> int:
        return 1

    with pytest.raises(KeyEncodingError):
        f(mock.Mock())


def test_objects_shown_by_address_never_share_entries() -> None:
    # "{p}" of an object without __str__ renders "<Plain object at 0x...>": addresses are reused
    # as soon as an object is freed, so two different objects would share one entry.
    cache = Cache(local=None)

    @cache.cached(ttl=60, key="p:{p}")
    def value_of(p: Plain) -> int:
        return p.n

    for n in range(50):
        with contextlib.suppress(KeyEncodingError):
            assert value_of(Plain(n)) == n, "another object's value was served"


def test_freshlink_key_hook_with_hostile_values() -> None:
    cache = Cache()

    @cache.cached(ttl=60)
    def f(x: WithHook) -> Any:
        return x.pk

    for pk in ("a\nb", "*", b"\xff", "\ud800", ("{", "}")):
        assert f(WithHook(pk)) == pk
        assert f.key(WithHook(pk)) == f.key(WithHook(pk))
    assert len({f.key(WithHook(pk)) for pk in ("a", "b", 1, "1", b"1")}) == 5


@pytest.mark.parametrize("version", ["1\n2", "a b", "\x00", "{}", "*", "é", "x" * 300])
def test_hostile_versions_are_refused_or_give_safe_keys(version: str) -> None:
    cache = Cache()
    try:

        @cache.cached(ttl=60, version=version)
        def f(x: int) -> int:
            return x

    except FreshlinkError:
        return
    assert f(1) == 1
    assert printable_key(f.key(1)), f"unsafe key {f.key(1)!r}"


@pytest.mark.redis
def test_a_newline_in_a_version_does_not_break_the_invalidation_channel(
    make_redis_cache: Callable[..., Cache], caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_redis_cache(local=Local(max_staleness=0.1))
    assert cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    try:

        @cache.cached(ttl=60, version="1\n2")
        def f(x: int) -> int:
            return x

    except FreshlinkError:
        return
    f(1)
    with caplog.at_level(logging.WARNING, logger="freshlink"):
        f.invalidate(1)  # publishes the entry's own generation name
        time.sleep(0.3)
    lost = [r for r in caplog.records if getattr(r, "freshlink_event", "") == "channel_lost"]
    assert not lost, lost[0].getMessage()


# ---------------------------------------------------------------------------- values


class Opaque:
    pass


def cyclic_list() -> list[Any]:
    x: list[Any] = [1]
    x.append(x)
    return x


def cyclic_dict() -> dict[str, Any]:
    d: dict[str, Any] = {}
    d["self"] = d
    return d


@pytest.mark.parametrize(
    ("make_value", "type_name"),
    [
        (lambda: "x" * 5000, "str"),
        (lambda: cyclic_list(), "list"),
        (lambda: cyclic_dict(), "dict"),
        (lambda: Opaque(), "Opaque"),
        (lambda: {"loan": Opaque()}, "Opaque"),
        (lambda: lambda: 1, "function"),
        (lambda: {1, object()}, "object"),
    ],
    ids=["too-large", "cyclic-list", "cyclic-dict", "opaque", "nested-opaque", "lambda", "set"],
)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_bad_values_raise_clear_errors_and_store_nothing(
    make_cache: Callable[..., Cache],
    make_value: Callable[[], Any],
    type_name: str,
    is_async: bool,
) -> None:
    # lease_ttl bounds how long a leaked fill lease could block the next call.
    cache = make_cache(max_value_size=1000, lease_ttl=3.0)
    loads: list[int] = []

    if is_async:

        @cache.cached(ttl=60)
        async def bad_loader(n: int) -> Any:
            loads.append(n)
            return make_value()

        async def call() -> Any:
            return await bad_loader(1)

    else:

        @cache.cached(ttl=60)
        def bad_loader(n: int) -> Any:
            loads.append(n)
            return make_value()

        async def call() -> Any:
            return bad_loader(1)

    expected = ValueTooLargeError if type_name == "str" else SerializationError
    for attempt in (1, 2):
        t0 = time.monotonic()
        with pytest.raises(expected) as info:
            await call()
        assert time.monotonic() - t0 < 1.0, "the call waited for a fill that never came"
        message = str(info.value)
        assert "bad_loader" in message  # names the function ...
        assert repr(type_name) in message  # ... and the type
        assert len(loads) == attempt  # nothing was stored: every call loads again
        assert cache.get(bad_loader.key(1)) is None


def test_a_write_through_whose_value_cannot_be_stored_still_invalidates(
    make_cache: Callable[..., Cache],
) -> None:
    cache = make_cache(max_value_size=1000)
    db: dict[int, Any] = {1: "old link"}

    @cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}"])
    def get_link(loan_id: int) -> Any:
        return db[loan_id]

    @cache.updates(get_link)
    def renew(loan_id: int, link: Any) -> Any:
        db[loan_id] = link
        return link

    assert get_link(1) == "old link"
    for new in ("z" * 5000, cyclic_list(), Opaque()):
        with pytest.raises((ValueTooLargeError, SerializationError)):
            renew(1, new)
        # The database changed; the cached old value must not survive the write. (Reading
        # loads the new value, which cannot be cached either: that read raises too.)
        try:
            served = get_link(1)
        except (ValueTooLargeError, SerializationError):
            served = "<not cacheable>"
        assert served != "old link", "the write-through failed and left the old value valid"
        db[1] = "old link"
        cache.invalidate("loan:1")
        assert get_link(1) == "old link"


# ---------------------------------------------------------------------------- fuzzing

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=30),
    st.binary(max_size=30),
    st.decimals(allow_nan=True),
    st.uuids(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.timedeltas(),
    st.builds(object),
    st.builds(Plain, st.integers()),
    st.builds(WithHook, st.text(max_size=5)),
)
hashable = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10), st.binary())
arguments = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashable, inner, max_size=4),
        st.frozensets(hashable, max_size=4),
        st.sets(hashable, max_size=4),
    ),
    max_leaves=12,
)


@FUZZ
@given(arguments)
def test_fuzz_encode_arg_is_deterministic_or_a_key_error(value: Any) -> None:
    try:
        encoded = encode_arg(value)
    except KeyEncodingError:
        return
    assert isinstance(encoded, str)
    assert encode_arg(copy.deepcopy(value)) == encoded


def _fuzz_target(a: Any, b: Any = None) -> None: ...


_DEFAULT_SPEC = KeySpec(_fuzz_target, key=None, tags=["t:{a}"], version=1)
_TEMPLATE_SPEC = KeySpec(_fuzz_target, key="k:{a}:{b}", tags=["t:{a}", "u:{b}"], version=1)


@FUZZ
@given(arguments, arguments)
def test_fuzz_key_for_gives_safe_keys_or_a_key_error(a: Any, b: Any) -> None:
    for spec in (_DEFAULT_SPEC, _TEMPLATE_SPEC):
        bound = spec.bind(None, (a, b), {})
        try:
            key = spec.key_for(bound)
            tags = spec.tags_for(bound)
        except KeyEncodingError:
            continue
        assert printable_key(key), key
        assert len(key) <= 300, key
        if spec is _TEMPLATE_SPEC:
            assert safe_key(key) == key
        for tag in tags:
            assert isinstance(tag, str)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.recursive(
            st.one_of(st.just('"$fl"'), st.just('{"$fl":"tuple","v":1}'), st.just("1")),
            lambda inner: (
                st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
                | st.tuples(
                    st.sampled_from(["dict", "set", "bytes", "uuid", "decimal", "x"]), inner
                ).map(lambda t: '{"$fl":"' + t[0] + '","v":' + t[1] + "}")
            ),
            max_leaves=8,
        ).map(str.encode),
    )
)
def test_fuzz_json_loads_only_raises_serialization_errors(data: bytes) -> None:
    with contextlib.suppress(SerializationError):
        JsonSerializer().loads(data)


@pytest.mark.parametrize(
    "data",
    [b"[" * 100_000 + b"]" * 100_000, b"1" * 5000, b'{"$fl":"dict","v":[[[], 1]]}', b"\xff"],
    ids=["deep", "long-int", "unhashable-key", "not-utf8"],
)
def test_json_decoding_edge_cases_are_serialization_errors(data: bytes) -> None:
    with pytest.raises(SerializationError):
        JsonSerializer().loads(data)


_SIGNED = make_codec("json", secret="s3cret")
_SIGNED_PICKLE = make_codec("pickle", secret="s3cret")
_PLAIN = make_codec("json")
_VALID = _SIGNED.encode({"link": "https://pay.example/7"}, b"ctx")


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=120),
        st.binary(max_size=40).map(lambda b: b"fl\x01" + b),
        st.tuples(st.integers(0, len(_VALID) - 1), st.integers(1, 255)).map(
            lambda t: _VALID[: t[0]] + bytes([_VALID[t[0]] ^ t[1]]) + _VALID[t[0] + 1 :]
        ),
        st.integers(0, len(_VALID) - 1).map(lambda n: _VALID[:n]),
    ),
    st.sampled_from([b"ctx", b"other", b""]),
)
def test_fuzz_codec_decode_rejects_everything_not_signed_for_its_context(
    payload: bytes, context: bytes
) -> None:
    for codec in (_SIGNED, _SIGNED_PICKLE):
        with pytest.raises(TamperedPayloadError):
            codec.decode(payload, context)
    with contextlib.suppress(SerializationError):
        _PLAIN.decode(payload, context)


def test_codec_accepts_exactly_the_valid_payload() -> None:
    assert _SIGNED.decode(_VALID, b"ctx") == {"link": "https://pay.example/7"}
    with pytest.raises(TamperedPayloadError):
        _SIGNED.decode(_VALID, b"ctx2")
    # An unsigned codec reading a signed payload (or the reverse) never returns a value.
    with pytest.raises(SerializationError):
        _PLAIN.decode(_VALID, b"")
    with pytest.raises(TamperedPayloadError):
        _SIGNED.decode(_PLAIN.encode({"link": "x"}, b""), b"ctx")
    assert isinstance(Codec(JsonSerializer(), Signer("s3cret")).decode(_VALID, b"ctx"), dict)


@FUZZ
@given(payload=st.binary(max_size=80), signed=st.booleans())
def test_fuzz_memory_entries_with_garbage_payloads_are_misses(payload: bytes, signed: bool) -> None:
    cache = Cache(secret="s3cret" if signed else None, local=None)
    errors: list[Any] = []
    cache.events.on("error", errors.append)

    @cache.cached(ttl=60, key="g", tags=["g"])
    def loader() -> str:
        return "from the loader"

    key = loader.key()
    names = cache.keyspace.names(key, loader.tags())
    stamps = cache.backend.current(names)
    assert cache.backend.write(
        cache.keyspace.entry(key), Entry(payload, names, stamps, 0.0, None), None
    )
    try:
        decoded = _PLAIN.decode(payload, b"")
    except SerializationError:
        decoded = "<garbage>"
    got = cache.get(key, "<miss>")
    if signed or decoded == "<garbage>":
        assert got == "<miss>"
        assert errors  # reported
        assert loader() == "from the loader"
    else:
        assert got == decoded  # an unsigned, well-formed entry is a value, not garbage


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.mark.redis
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_fuzz_garbage_redis_entries_are_misses(
    make_redis_cache: Callable[..., Cache], raw_redis: redis.Redis, signed: bool
) -> None:
    cache = make_redis_cache(secret="s3cret" if signed else None, namespace="fz")

    @cache.cached(ttl=60, key="g", tags=["g"], code_identity=False)
    def loader() -> str:
        return "from the loader"

    key = loader.key()
    ekey = cache.keyspace.entry(key)
    names = cache.keyspace.names(key, loader.tags())
    run_id = server_identity(raw_redis.info())
    good = {"meta": b"1700000000.0,60.0,0.0", "payload": b'"forged"'}
    garbage = st.binary(max_size=40) | st.text(max_size=20).map(str.encode)

    @FUZZ
    @given(
        r=st.just(run_id.encode()) | garbage,
        n=st.just("\n".join(names).encode()) | st.just(names[0].encode()) | garbage,
        s=st.just(b"<current>") | garbage,
        m=st.just(good["meta"]) | st.just(b"1,2") | st.just(b"a,b,c") | st.just(b",,") | garbage,
        p=st.just(good["payload"]) | garbage,
        size=st.none() | st.integers(-2, 200).map(lambda i: str(i).encode()) | garbage,
        cut=st.none() | st.integers(0, 200),
    )
    def check(
        r: bytes, n: bytes, s: bytes, m: bytes, p: bytes, size: bytes | None, cut: int | None
    ) -> None:
        raw_redis.delete(ekey)
        stamps = ",".join(map(str, cache.backend.current(names))).encode()
        # The layout of an entry (see freshlink.backends._scripts), each part fuzzed, and
        # the whole cut short.
        length = str(len(n)).encode() if size is None else size
        stored = b"E" + r + b"\n" + length + b"\n" + n
        stored += (stamps if s == b"<current>" else s) + b"\n" + m + b"\n" + p
        raw_redis.set(ekey, stored if cut is None else stored[:cut])
        got = cache.get(key, "<miss>")
        served = loader()
        if signed:
            assert got == "<miss>"  # nothing that was not signed with the secret is returned
            assert served == "from the loader"
        else:
            assert got in ("<miss>", "forged")  # garbage is a miss; a well-formed entry is not
            assert served in ("from the loader", "forged")

    check()


@pytest.mark.redis
@pytest.mark.parametrize(
    "poison",
    [b"abc", b"", b"1e5", b"-1", b"12345678901234567890123", b"\xff\xfe"],
    ids=["text", "empty", "float", "negative", "huge", "binary"],
)
def test_garbage_generation_counters_never_crash_a_call(
    make_redis_cache: Callable[..., Cache], raw_redis: redis.Redis, poison: bytes
) -> None:
    cache = make_redis_cache(namespace="gen")
    db = {"v": 1}

    @cache.cached(ttl=60, tags=["t"], code_identity=False)
    def read() -> int:
        return db["v"]

    assert read() == 1
    raw_redis.set(cache.keyspace.tag("t"), poison)
    assert read() == 1  # the loader answers, or the cache: never an exception
    db["v"] = 2
    # A poisoned counter is unknown, like a missing one: the tag can still be invalidated.
    cache.invalidate("t")
    assert read() == 2


@pytest.mark.redis
def test_an_entry_key_of_the_wrong_type_is_a_miss_and_does_not_open_the_breaker(
    make_redis_cache: Callable[..., Cache], raw_redis: redis.Redis
) -> None:
    cache = make_redis_cache(namespace="wt")

    @cache.cached(ttl=60, key="k", code_identity=False)
    def poisoned() -> str:
        return "from the loader"

    @cache.cached(ttl=60, key="other", code_identity=False)
    def healthy() -> str:
        loads.append("healthy")
        return "healthy"

    loads: list[str] = []
    healthy()
    raw_redis.hset(cache.keyspace.entry(poisoned.key()), "p", "not a string")
    assert cache.get(poisoned.key(), "<miss>") == "<miss>"
    for _ in range(10):
        assert poisoned() == "from the loader"
    assert cache.breaker is not None
    assert cache.breaker.state == "closed", "one poisoned key opened the circuit for all keys"
    assert healthy() == "healthy"
    assert loads == ["healthy"]  # still served from the cache
