"""Key templates, canonical binding and hashing."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshlink import Cache, InvalidTagError, KeyEncodingError, KeyTemplateError
from freshlink.keys import MAX_KEY_LENGTH, KeySpec, check_tag, encode_arg, safe_key


def spec_of(func: Any, **kw: Any) -> KeySpec:
    kw.setdefault("key", None)
    kw.setdefault("tags", ())
    kw.setdefault("version", None)
    return KeySpec(func, **kw)


def f(a: int, b: str = "x", *rest: int, c: int = 3, **extra: Any) -> None: ...


def key(spec: KeySpec, *args: Any, **kwargs: Any) -> str:
    return spec.key_for(spec.bind(None, args, kwargs))


def test_positional_keyword_and_default_give_one_key() -> None:
    s = spec_of(f)
    k = key(s, 1)
    assert k == key(s, 1, "x") == key(s, a=1) == key(s, 1, b="x") == key(s, 1, c=3)
    assert k != key(s, 1, "y")
    assert k != key(s, 1, c=4)
    assert k != key(s, 1, "x", 9)
    assert k != key(s, 1, z=1)


def test_types_are_part_of_the_key() -> None:
    s = spec_of(lambda a: None)
    keys = {key(s, v) for v in (1, 1.0, True, "1", b"1", Decimal("1"), Decimal("1.0"), (1,), [1])}
    assert len(keys) == 9


def test_unknown_placeholder_fails_at_decoration() -> None:
    cache = Cache()
    with pytest.raises(KeyTemplateError, match="'loan'") as info:

        @cache.cached(key="loan:{loan}")
        def get_loan(loan_id: int) -> None: ...

    assert "get_loan" in str(info.value)
    with pytest.raises(KeyTemplateError, match="'usr'"):

        @cache.cached(tags=["user:{usr.id}"])
        def get_user(user: Any) -> None: ...

    with pytest.raises(KeyTemplateError, match="positional"):

        @cache.cached(key="loan:{}")
        def g(loan_id: int) -> None: ...

    with pytest.raises(KeyTemplateError, match="malformed"):

        @cache.cached(key="loan:{loan_id")
        def h(loan_id: int) -> None: ...

    with pytest.raises(KeyTemplateError, match="list"):
        cache.cached(tags="user:{x}")(lambda x: x)


def test_template_values_are_escaped_so_keys_cannot_collide() -> None:
    s = spec_of(lambda a, b: None, key="loan:{a}:{b}")
    assert key(s, "1:2", "3") != key(s, "1", "2:3")
    assert key(s, 7, 8).endswith(":loan:7:8")


def test_odd_and_long_keys_are_hashed() -> None:
    s = spec_of(lambda a: None, key="{a}")
    for hostile in ("a b", "x\ny", "*", "{}", "\x00", "é", "z" * (MAX_KEY_LENGTH + 1)):
        k = key(s, hostile)
        assert len(k) <= MAX_KEY_LENGTH
        assert all(c.isprintable() and not c.isspace() for c in k)
    assert safe_key("plain:key") == "plain:key"
    assert safe_key("with space").startswith("#")
    assert safe_key("with space") == safe_key("with space")


def test_unencodable_argument_is_a_clear_error() -> None:
    s = spec_of(lambda a: None)

    class Opaque:
        pass

    with pytest.raises(KeyEncodingError, match="Opaque"):
        key(s, Opaque())
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(KeyEncodingError):
        key(s, cyclic)


def test_objects_can_define_their_key() -> None:
    s = spec_of(lambda a: None)

    class Loan:
        def __init__(self, pk: int) -> None:
            self.pk = pk

        def __freshlink_key__(self) -> int:
            return self.pk

    assert key(s, Loan(1)) == key(s, Loan(1))
    assert key(s, Loan(1)) != key(s, Loan(2))


def test_template_rendering_errors_are_key_errors() -> None:
    s = spec_of(lambda a: None, key="{a.missing}")
    with pytest.raises(KeyEncodingError, match="missing"):
        key(s, 1)


def test_check_tag() -> None:
    assert check_tag("user:42") == "user:42"
    for bad in ("", "a b", "a\nb", "\x00"):
        with pytest.raises(InvalidTagError):
            check_tag(bad)
    with pytest.raises(InvalidTagError):
        check_tag(42)  # type: ignore[arg-type]


def test_code_identity_changes_keys() -> None:
    def g1(a: int) -> int:
        return a

    def g2(a: int) -> int:
        return a + 1

    g2.__qualname__ = g1.__qualname__
    assert key(spec_of(g1), 1) != key(spec_of(g2), 1)
    assert key(spec_of(g1, use_code_identity=False), 1) == key(
        spec_of(g2, use_code_identity=False), 1
    )


atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.decimals(allow_nan=False),
    st.uuids(),
    st.dates(),
    st.datetimes(timezones=st.none() | st.timezones()),
)
values = st.recursive(
    atoms,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=3), children, max_size=3)
        | st.frozensets(st.integers(), max_size=3)
    ),
    max_leaves=10,
)


def g(a: Any, b: Any = None, *, c: Any = 0) -> None: ...


@given(values, values)
def test_equivalent_calls_equal_keys(a: Any, b: Any) -> None:
    s = spec_of(g)
    k = key(s, a, b)
    assert k == key(s, a=a, b=b) == key(s, a, b=b) == key(s, a, b, c=0)


@given(values, values)
def test_different_arguments_different_keys(a: Any, b: Any) -> None:
    s = spec_of(g)
    if encode_arg(a) != encode_arg(b):
        assert key(s, a) != key(s, b)
    else:
        assert key(s, a) == key(s, b)


@given(values, values)
def test_encoding_is_injective_on_equal_types(a: Any, b: Any) -> None:
    # Equal encodings only for values that are equal and of equal shape.
    if encode_arg(a) == encode_arg(b):
        assert type(a) is type(b)
        assert a == b or a != a  # NaN-free by strategy; Decimal('-0') == Decimal('0') holds


def test_raw_key_never_merges_values_with_different_keys() -> None:
    s = spec_of(g)
    tok = "t"
    pairs = [(1, True), (1, 1.0), (0, False), (-0.0, 0.0), (Decimal("1.0"), Decimal("1.00"))]
    for x, y in pairs:
        rx, ry = s.raw_key(tok, (x,), {}), s.raw_key(tok, (y,), {})
        if rx is not None and ry is not None:
            assert rx != ry, (x, y)
    assert s.raw_key(tok, ((1,),), {}) is None  # containers take the slow path
    assert s.raw_key(tok, (uuid.uuid4(), "x"), {}) is not None
    assert s.raw_key(tok, (dt.date.today(),), {}) is None
